/// Why a hybrid-cache call was refused. Every throwing call that throws one of these has changed
/// nothing: no node, checkpoint, stamp or event.
public enum HybridCacheError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The sequence needs `bytes` (its KV and one checkpoint) and the cache holds at most `capacity`:
    /// it could not fit even in an empty cache.
    case tooLarge(bytes: Int64, capacity: Int64)
    /// A plan was committed for a tree that changed since it was made (another insert or an eviction
    /// came between `plan` and `commit`).
    case stalePlan
    /// An argument outside its domain.
    case invalidArgument(String)

    public var description: String {
        switch self {
        case .tooLarge(let b, let c): "the sequence needs \(b) bytes and the cache holds at most \(c)"
        case .stalePlan: "the plan was made for an earlier state of the cache"
        case .invalidArgument(let why): "invalid argument: \(why)"
        }
    }
}
