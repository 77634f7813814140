// The product libkvcache_config.so: KVCacheConfigLibrary's exports, linked as Package.swift's
// `configLibraryFlags` say. No code of its own.
@_exported import KVCacheConfigLibrary
