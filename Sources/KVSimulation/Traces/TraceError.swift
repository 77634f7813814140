/// Why a trace could not be read. Every case names the file; a bad row names its 1-based line.
public enum TraceError: Error, Equatable, CustomStringConvertible {
    case unreadable(path: String, reason: String)
    case unknownFormat(path: String)
    case badLine(path: String, line: Int, reason: String)
    case empty(path: String)

    public var description: String {
        switch self {
        case let .unreadable(path, reason): return "\(path): cannot read: \(reason)"
        case let .unknownFormat(path): return "\(path): unknown trace format (use --format)"
        case let .badLine(path, line, reason): return "\(path):\(line): \(reason)"
        case let .empty(path): return "\(path): no requests"
        }
    }
}

/// A trace read into memory.
public struct LoadedTrace: Sendable {
    /// The requests, in file order (arrivals are not re-sorted: readers keep the trace's own order).
    public var requests: [TraceRequest]
    /// The format it was read as.
    public var format: TraceFormat
    /// Rows skipped as malformed (only with `skipBadLines`).
    public var skippedLines: Int
    /// The first skipped row's location and reason, for the report.
    public var firstSkipped: String?
    /// Whether the trace carries arrival times (false: every arrival is 0 and the replay decides).
    public var hasTimestamps: Bool

    public init(requests: [TraceRequest], format: TraceFormat, skippedLines: Int = 0,
                firstSkipped: String? = nil, hasTimestamps: Bool) {
        self.requests = requests
        self.format = format
        self.skippedLines = skippedLines
        self.firstSkipped = firstSkipped
        self.hasTimestamps = hasTimestamps
    }
}

/// Collects malformed rows: throws on the first one, or counts it when skipping is allowed.
struct BadLineSink {
    let path: String
    let skip: Bool
    var skipped = 0
    var first: String?

    mutating func report(line: Int, _ reason: String) throws(TraceError) {
        let error = TraceError.badLine(path: path, line: line, reason: reason)
        guard skip else { throw error }
        skipped += 1
        if first == nil { first = error.description }
    }
}
