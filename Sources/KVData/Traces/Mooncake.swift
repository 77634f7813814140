/// Reads Mooncake-format JSONL traces: one request per line with `timestamp` (milliseconds),
/// `input_length`, `output_length` and `hash_ids` (prefix-block ids: equal id = same prefix up to
/// and including that block; `blockTokens` tokens per id, the last one possibly partial).
///
/// The one Mooncake reader: `kvcache replay` takes its requests, and the history predictor's length
/// data set (`predict eval --history`) is built from the same requests, so a row one rejects the other
/// rejects too. A line is malformed when it is not a JSON object, lacks a field, has a negative,
/// non-integer or too large length (`DataLimits.maxTokensPerRequest`), has a timestamp that is not
/// finite, earlier than the previous row's or more than `DataLimits.maxArrivalSpanSeconds` after the
/// first, or has `hash_ids.count != ceil(input_length / blockTokens)`: a
/// `DataError.badLine` naming the file and the 1-based line (or, with `skipBadLines`, the line is
/// counted and skipped). A line of more JSON values than the longest request's ids plus
/// `DataLimits.maxScalarFields` is refused before it is decoded; a line in the traces' own shape is read by
/// `MooncakeRowScanner`, any other by `JSONDecoder`. Blank lines are ignored. O(file size); memory holds the requests.
public enum Mooncake {
    private struct Row: Decodable {
        var timestamp: Double
        var input_length: Int
        var output_length: Int
        var hash_ids: [Int64]
    }

    /// Reads a whole JSONL document (gzip or not) from `source`.
    /// `blockTokens` must lie in `1...DataLimits.maxTokensPerRequest`.
    public static func read(_ source: ByteSource, blockTokens: Int = 512,
                            skipBadLines: Bool = false) throws(DataError) -> LoadedTrace {
        let path = source.path
        guard (1...DataLimits.maxTokensPerRequest).contains(blockTokens) else {
            throw .badLine(path: path, line: 0, reason: "\(blockTokens) tokens per hash block is outside 1...\(DataLimits.maxTokensPerRequest)")
        }
        var sink = BadLineSink(path: path, skip: skipBadLines)
        var budget = RecordBudget(path: path)
        var requests: [TraceRequest] = []
        var clock = ArrivalClock(unitsPerSecond: 1000)
        // A line holds at most the ids of the longest request plus a few fields; near the end of the
        // file's id budget, at most what is left of it. Both are counted before the line is decoded.
        let idsPerRecord = (DataLimits.maxTokensPerRequest + blockTokens - 1) / blockTokens
        try JSONLines.forEachLine(in: source) { (line, lineNumber) throws(DataError) in
            let left = DataLimits.maxTotalHashIDs - budget.hashIDs
            if left < idsPerRecord, JSONLines.valueCount(line, stoppingAfter: left + DataLimits.maxScalarFields) > left + DataLimits.maxScalarFields {
                try budget.add(line: lineNumber, hashIDs: left + 1)
            }
            let row: Row
            do throws(DataError) {
                if let fast = MooncakeRowScanner.scan(line, maxIDs: idsPerRecord) {
                    row = Row(timestamp: fast.timestamp, input_length: fast.inputLength, output_length: fast.outputLength,
                              hash_ids: fast.hashIDs)
                } else {
                    row = try JSONLines.decode(Row.self, line, path: path, line: lineNumber,
                                               maxValues: idsPerRecord + DataLimits.maxScalarFields)
                }
            } catch {
                try sink.report(error)
                return
            }
            let limit = DataLimits.maxTokensPerRequest
            guard (0...limit).contains(row.input_length), (0...limit).contains(row.output_length) else {
                try sink.report(line: lineNumber, "input_length \(row.input_length) or output_length \(row.output_length) is outside 0...\(limit)")
                return
            }
            let expected = (row.input_length + blockTokens - 1) / blockTokens
            guard row.hash_ids.count == expected else {
                try sink.report(line: lineNumber, "\(row.hash_ids.count) hash_ids for input_length \(row.input_length) (expected \(expected) at \(blockTokens) tokens per block)")
                return
            }
            guard row.hash_ids.allSatisfy({ $0 >= 0 }) else {
                try sink.report(line: lineNumber, "negative hash id")
                return
            }
            let arrival: Double
            switch clock.arrival(of: row.timestamp) {
            case let .success(t): arrival = t
            case let .failure(refusal):
                try sink.report(line: lineNumber, refusal.description)
                return
            }
            try budget.add(line: lineNumber, hashIDs: row.hash_ids.count)
            clock.accept(row.timestamp)
            requests.append(TraceRequest(arrival: arrival, inputTokens: row.input_length,
                                         outputTokens: row.output_length, hashIDs: row.hash_ids.map { UInt64($0) },
                                         hashBlockTokens: blockTokens))
        }
        guard !requests.isEmpty else { throw .empty(path: path) }
        return LoadedTrace(requests: requests, format: .mooncake, skippedLines: sink.skipped,
                           firstSkipped: sink.first, hasTimestamps: true)
    }
}
