/// Why a recorded KV-event stream could not be read. Reading never changes anything on failure.
public enum EventRecordingError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The bytes are not what the format says (`reason` names where).
    case malformed(String)

    public var description: String {
        switch self {
        case let .malformed(reason): reason
        }
    }
}
