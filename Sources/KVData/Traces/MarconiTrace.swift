/// Reads the hybrid-model trace schema of Marconi's policy simulator (MLSys'25): JSON Lines (gzip or
/// not), one request per line, `session_id`, `turn_id`, `ts` (seconds), `num_input_tokens`,
/// `num_output_tokens`, `input_tokens` and `output_tokens` (token ids).
///
/// Requests keep file order (the simulator replays in file order, never re-sorted). A line is malformed
/// when it is not a JSON object, lacks a field, has a negative id, count or turn, a non-finite `ts`, a
/// token id outside 0...Int32.max, or a count that differs from its list's length: a
/// `DataError.badLine` naming the file and the 1-based line (or, with `skipBadLines`, the line is
/// counted and skipped). O(file size); memory holds the requests.
public enum MarconiTrace {
    /// One request, with its token ids.
    public struct Request: Sendable, Equatable {
        public var session: Int
        public var turn: Int
        public var time: Double
        public var input: [Int32]
        public var output: [Int32]
    }

    /// A whole trace: the requests, and what was skipped.
    public struct Trace: Sendable {
        public var requests: [Request]
        public var skippedLines: Int
        public var firstSkipped: String?
    }

    private struct Row: Decodable {
        var session_id: Int
        var turn_id: Int
        var ts: Double
        var num_input_tokens: Int
        var num_output_tokens: Int
        var input_tokens: [Int]
        var output_tokens: [Int]
    }

    /// Reads every request of `source`.
    public static func read(_ source: ByteSource, skipBadLines: Bool = false) throws(DataError) -> Trace {
        let path = source.path
        var sink = BadLineSink(path: path, skip: skipBadLines)
        var requests: [Request] = []
        try JSONLines.forEachLine(in: source) { (line, number) throws(DataError) in
            let row: Row
            do throws(DataError) { row = try JSONLines.decode(Row.self, line, path: path, line: number) } catch {
                try sink.report(error)
                return
            }
            if let reason = problem(row) {
                try sink.report(line: number, reason)
                return
            }
            requests.append(Request(session: row.session_id, turn: row.turn_id, time: row.ts,
                                    input: row.input_tokens.map { Int32($0) }, output: row.output_tokens.map { Int32($0) }))
        }
        guard !requests.isEmpty else { throw .empty(path: path) }
        return Trace(requests: requests, skippedLines: sink.skipped, firstSkipped: sink.first)
    }

    /// The requests as lengths only, for the replays that take `TraceRequest`s.
    public static func loaded(_ source: ByteSource, skipBadLines: Bool = false) throws(DataError) -> LoadedTrace {
        let trace = try read(source, skipBadLines: skipBadLines)
        let start = trace.requests[0].time
        return LoadedTrace(
            requests: trace.requests.map {
                TraceRequest(arrival: $0.time - start, inputTokens: $0.input.count, outputTokens: $0.output.count,
                             session: String($0.session))
            },
            format: .marconi, skippedLines: trace.skippedLines, firstSkipped: trace.firstSkipped, hasTimestamps: true)
    }

    private static func problem(_ row: Row) -> String? {
        if row.session_id < 0 || row.turn_id < 0 { return "negative session_id or turn_id" }
        if !row.ts.isFinite { return "invalid ts" }
        if row.num_input_tokens != row.input_tokens.count {
            return "num_input_tokens \(row.num_input_tokens) but \(row.input_tokens.count) input_tokens"
        }
        if row.num_output_tokens != row.output_tokens.count {
            return "num_output_tokens \(row.num_output_tokens) but \(row.output_tokens.count) output_tokens"
        }
        let valid = 0 ... Int(Int32.max)
        if !row.input_tokens.allSatisfy(valid.contains) || !row.output_tokens.allSatisfy(valid.contains) {
            return "token id outside 0...\(Int32.max)"
        }
        return nil
    }
}
