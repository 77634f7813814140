import CKVCache
import KVCache
import KVTiers

/// Why a C ABI call failed: a facade error, or a check of the boundary itself (NULL handle or
/// pointer, a caller buffer too short, a value C can express but the API forbids). Carries static
/// text wherever it can, so recording a failure allocates nothing.
enum CAPIError: Error {
    /// The facade refused the call (it changed nothing).
    case cache(KVCacheError)
    /// The handle argument is NULL.
    case nullHandle
    /// The handle argument is a live handle of another kind (a `kvcache_t` where a `kvcache_tiers_t`
    /// is expected, ...).
    case wrongHandle
    /// A required pointer argument, named, is NULL.
    case nullPointer(StaticString)
    /// A caller buffer, named, holds `capacity` elements but `needed` are pending.
    case bufferTooSmall(StaticString, needed: Int, capacity: Int)
    /// An argument out of range that only the boundary sees (negative length, bad enum value,
    /// string that is not UTF-8).
    case invalidArgument(StaticString)
    /// A string argument, named, that is not valid UTF-8.
    case notUTF8(StaticString)
    /// `validate` found a broken invariant.
    case invariantViolation(String)
    /// `create`: the index of this many blocks would not fit in memory.
    case outOfMemory(blocks: Int, limitBytes: Int)
    /// The tier manager refused the call (it changed nothing).
    case tier(TierError)
    /// A configuration (environment variables, YAML file) was refused; the text names the key.
    case configuration(String)
    /// libkvcache_config.so, which reads configurations and publishes events, could not be loaded; the
    /// text names the files tried and the loader's reasons.
    case configLibrary(String)

    /// The status code the C caller gets (one per `KVCacheError` case). O(1).
    var status: kvcache_status {
        switch self {
        case .cache(let e):
            switch e {
            case .unknownSequence: Status.unknownSequence
            case .duplicateSequence: Status.duplicateSequence
            case .invalidBlock: Status.invalidBlock
            case .doubleFree: Status.doubleFree
            case .blockStillReferenced: Status.blockStillReferenced
            case .blockNotReferenced: Status.blockNotReferenced
            case .insufficientBlocks: Status.insufficientBlocks
            case .blocksInUse: Status.blocksInUse
            case .invalidArgument: Status.invalidArgument
            }
        case .nullHandle: Status.nullHandle
        case .nullPointer: Status.nullPointer
        case .bufferTooSmall: Status.bufferTooSmall
        case .invalidArgument, .notUTF8, .configuration, .wrongHandle: Status.invalidArgument
        case .configLibrary: Status.configLibrary
        case .invariantViolation: Status.invariantViolation
        case .outOfMemory: Status.outOfMemory
        case .tier(let e):
            if case .invalidArgument = e { Status.invalidArgument } else { Status.tierSystem }
        }
    }

    /// The sentence `kvcache_last_error` shows, without the function name. Allocates: called only
    /// when the caller asks for the text.
    var message: String {
        switch self {
        case .cache(let e): e.description
        case .nullHandle: "the handle is NULL"
        case .wrongHandle: "invalid argument: the handle is of another kind (kvcache_t, kvcache_tiers_t and kvcache_hybrid_t do not mix)"
        case .nullPointer(let name): "\(name) is NULL"
        case .bufferTooSmall(let name, let needed, let capacity):
            "\(name) holds \(capacity) but \(needed) are needed"
        case .invalidArgument(let why): "invalid argument: \(why)"
        case .notUTF8(let name): "invalid argument: \(name) is not UTF-8"
        case .invariantViolation(let what): "invariant violated: \(what)"
        case .outOfMemory(let blocks, let limit):
            "capacity_blocks \(blocks) needs more than half of the \(limit >> 20) MiB this process may use"
        case .tier(let e): e.description
        case .configuration(let why): "invalid argument: \(why)"
        case .configLibrary(let why): why
        }
    }
}

/// Runs a facade call, turning its typed error into the boundary's.
@inline(__always)
func lift<R>(_ call: () throws(KVCacheError) -> R) throws(CAPIError) -> R {
    do { return try call() } catch { throw .cache(error) }
}
