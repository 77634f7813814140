import KVCache

/// Errors of the tier layer. Every throwing call leaves the tier's state unchanged.
public enum TierError: Error, Equatable, Sendable {
    /// The core (or a geometry) refused an argument; its error, unchanged.
    case cache(KVCacheError)
    /// A caller passed a value outside the documented domain.
    case invalidArgument(String)
    /// A POSIX call failed; `errno` is the C error number.
    case system(call: String, errno: Int32)
    /// A zstd call failed with the given zstd error code.
    case zstd(call: String, code: Int, name: String)
    /// A stored record failed its checksum or key check and was dropped.
    case corrupt(String)
    /// The tier has no room and nothing can be evicted now.
    case full
    /// The directory is locked by another process.
    case locked(String)
}
