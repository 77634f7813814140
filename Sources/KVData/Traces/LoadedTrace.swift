/// A trace read into memory: the requests every replay driver takes, and what the reader skipped.
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
