#if canImport(Glibc)
import Glibc
#endif
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

extension TierError: CustomStringConvertible {
    /// One readable line, e.g. "open failed: No such file or directory (errno 2)"; paths are in the
    /// messages of the cases that carry them.
    public var description: String {
        switch self {
        case .cache(let e): "cache: \(e)"
        case .invalidArgument(let m): "invalid argument: \(m)"
        case .system(let call, let code): "\(call) failed: \(String(cString: strerror(code))) (errno \(code))"
        case .zstd(let call, let code, let name): "\(call) failed: \(name) (zstd error \(code))"
        case .corrupt(let m): "corrupt: \(m)"
        case .full: "the tier is full and nothing can be evicted now"
        case .locked(let m): "locked: \(m)"
        }
    }
}

extension TierError {
    /// The same error with `path` named in it (a system call's message gains the path when it lacks
    /// one), so the line a user sees says which file it is about.
    func naming(_ path: String) -> TierError {
        switch self {
        case .system(let call, let code) where !call.contains(path): .system(call: "\(call) \(path)", errno: code)
        case .corrupt(let m) where !m.contains(path): .corrupt("\(path): \(m)")
        case .zstd(let call, let code, let name): .zstd(call: "\(call) (\(path))", code: code, name: name)
        case .invalidArgument(let m) where !m.contains(path): .invalidArgument("\(path): \(m)")
        default: self
        }
    }
}
