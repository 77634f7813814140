import CKVCache

/// The header's status codes as `kvcache_status` values (the C enum imports as a struct type whose
/// raw value type differs between platforms). One source of truth: kvcache.h.
enum Status {
    static var ok: kvcache_status { code(KVCACHE_OK) }
    static var nullHandle: kvcache_status { code(KVCACHE_ERR_NULL_HANDLE) }
    static var nullPointer: kvcache_status { code(KVCACHE_ERR_NULL_POINTER) }
    static var invalidArgument: kvcache_status { code(KVCACHE_ERR_INVALID_ARGUMENT) }
    static var unknownSequence: kvcache_status { code(KVCACHE_ERR_UNKNOWN_SEQUENCE) }
    static var duplicateSequence: kvcache_status { code(KVCACHE_ERR_DUPLICATE_SEQUENCE) }
    static var insufficientBlocks: kvcache_status { code(KVCACHE_ERR_INSUFFICIENT_BLOCKS) }
    static var blocksInUse: kvcache_status { code(KVCACHE_ERR_BLOCKS_IN_USE) }
    static var bufferTooSmall: kvcache_status { code(KVCACHE_ERR_BUFFER_TOO_SMALL) }
    static var invalidBlock: kvcache_status { code(KVCACHE_ERR_INVALID_BLOCK) }
    static var doubleFree: kvcache_status { code(KVCACHE_ERR_DOUBLE_FREE) }
    static var blockStillReferenced: kvcache_status { code(KVCACHE_ERR_BLOCK_STILL_REFERENCED) }
    static var blockNotReferenced: kvcache_status { code(KVCACHE_ERR_BLOCK_NOT_REFERENCED) }
    static var invariantViolation: kvcache_status { code(KVCACHE_ERR_INVARIANT_VIOLATION) }
    static var outOfMemory: kvcache_status { code(KVCACHE_ERR_OUT_OF_MEMORY) }
    static var tierSystem: kvcache_status { kvcache_status(truncatingIfNeeded: KVCACHE_ERR_TIER_SYSTEM.rawValue) }
    static var configLibrary: kvcache_status { kvcache_status(truncatingIfNeeded: KVCACHE_ERR_CONFIG_LIBRARY.rawValue) }

    @inline(__always) private static func code(_ c: kvcache_status_code) -> kvcache_status {
        kvcache_status(truncatingIfNeeded: c.rawValue)
    }

    /// The constant's name in the header, as static NUL-terminated text. O(1).
    static func name(_ status: kvcache_status) -> StaticString {
        switch status {
        case ok: "KVCACHE_OK"
        case nullHandle: "KVCACHE_ERR_NULL_HANDLE"
        case nullPointer: "KVCACHE_ERR_NULL_POINTER"
        case invalidArgument: "KVCACHE_ERR_INVALID_ARGUMENT"
        case unknownSequence: "KVCACHE_ERR_UNKNOWN_SEQUENCE"
        case duplicateSequence: "KVCACHE_ERR_DUPLICATE_SEQUENCE"
        case insufficientBlocks: "KVCACHE_ERR_INSUFFICIENT_BLOCKS"
        case blocksInUse: "KVCACHE_ERR_BLOCKS_IN_USE"
        case bufferTooSmall: "KVCACHE_ERR_BUFFER_TOO_SMALL"
        case invalidBlock: "KVCACHE_ERR_INVALID_BLOCK"
        case doubleFree: "KVCACHE_ERR_DOUBLE_FREE"
        case blockStillReferenced: "KVCACHE_ERR_BLOCK_STILL_REFERENCED"
        case blockNotReferenced: "KVCACHE_ERR_BLOCK_NOT_REFERENCED"
        case invariantViolation: "KVCACHE_ERR_INVARIANT_VIOLATION"
        case outOfMemory: "KVCACHE_ERR_OUT_OF_MEMORY"
        case tierSystem: "KVCACHE_ERR_TIER_SYSTEM"
        case configLibrary: "KVCACHE_ERR_CONFIG_LIBRARY"
        default: "KVCACHE_STATUS_UNKNOWN"
        }
    }
}
