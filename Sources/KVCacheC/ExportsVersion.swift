import CKVCache

// The library's versions: its release (kvcache_version, kvcache_version_string) and its ABI
// (kvcache_abi_version, checked by kvcache_create_checked). Each `@_cdecl` function implements the
// declaration of the same C name in kvcache.h.

/// The versions of this build, from kvcache.h's constants: the header is the one source of truth, so a
/// library and the header it was built with can never disagree.
///
/// Every member is O(1) after the first use of `text` (one allocation for the life of the process, made
/// under Swift's once-only global initialisation, so any thread may ask at any time).
enum LibraryVersion {
    /// MAJOR * 10000 + MINOR * 100 + PATCH.
    static let number = UInt32(KVCACHE_VERSION_MAJOR * 10000 + KVCACHE_VERSION_MINOR * 100 + KVCACHE_VERSION_PATCH)
    /// KVCACHE_ABI_VERSION: the number in the SONAME.
    static let abi = UInt32(KVCACHE_ABI_VERSION)
    /// "MAJOR.MINOR.PATCH" as a NUL-terminated C string that is never freed. Sendable in fact: the bytes
    /// are written once, before the pointer is published, and never again.
    nonisolated(unsafe) static let text: UnsafePointer<CChar> = {
        let s = "\(KVCACHE_VERSION_MAJOR).\(KVCACHE_VERSION_MINOR).\(KVCACHE_VERSION_PATCH)"
        let bytes = Array(s.utf8CString)
        let storage = UnsafeMutablePointer<CChar>.allocate(capacity: bytes.count)
        storage.initialize(from: bytes, count: bytes.count)
        return UnsafePointer(storage)
    }()
}

/// kvcache_version: the release as MAJOR * 10000 + MINOR * 100 + PATCH. O(1).
@_cdecl("kvcache_version")
public func kvcacheVersionImpl() -> UInt32 { LibraryVersion.number }

/// kvcache_version_string: the release as "MAJOR.MINOR.PATCH", static storage. O(1).
@_cdecl("kvcache_version_string")
public func kvcacheVersionStringImpl() -> UnsafePointer<CChar> { LibraryVersion.text }

/// kvcache_abi_version: KVCACHE_ABI_VERSION of the header the library was built with. O(1).
@_cdecl("kvcache_abi_version")
public func kvcacheABIVersionImpl() -> UInt32 { LibraryVersion.abi }
