/// Failures of the simulated caches (`KnowledgeTree`, `PensieveRetention`); a throwing call has changed
/// nothing.
public enum CacheModelError: Error, Equatable, CustomStringConvertible {
    /// A configuration value or an argument out of range.
    case invalidArgument(String)
    /// `validate()` found a broken invariant (a bug, not bad input).
    case invariant(String)

    public var description: String {
        switch self {
        case .invalidArgument(let m): "invalid argument: \(m)"
        case .invariant(let m): "invariant broken: \(m)"
        }
    }
}
