// The product libkvcache_c.so: KVCacheC's exports, linked as Package.swift's `sharedLibraryFlags` say.
// No code of its own.
@_exported import KVCacheC
