/// Failures of the event publisher and subscriber. Every throwing call that throws one of these has
/// changed nothing (no socket left open, no sequence number used).
public enum KVEventsError: Error, Equatable, Sendable, CustomStringConvertible {
    /// An endpoint could not be bound (address in use, malformed, unsupported transport).
    case bind(endpoint: String, reason: String)
    /// An endpoint could not be connected to (malformed, unsupported transport).
    case connect(endpoint: String, reason: String)
    /// libzmq refused a socket or context (out of file descriptors, memory).
    case socket(String)
    /// A setting outside its range.
    case invalidArgument(String)

    public var description: String {
        switch self {
        case .bind(let endpoint, let reason): "cannot bind \(endpoint): \(reason)"
        case .connect(let endpoint, let reason): "cannot connect to \(endpoint): \(reason)"
        case .socket(let reason): "zmq: \(reason)"
        case .invalidArgument(let reason): "invalid argument: \(reason)"
        }
    }
}
