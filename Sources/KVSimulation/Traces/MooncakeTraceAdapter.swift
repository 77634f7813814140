import Foundation

/// Mooncake JSONL (`timestamp` ms, `input_length`, `output_length`, `hash_ids` of 512-token blocks) as
/// `TraceRequest`s, for the timed replay's format dispatch.
enum MooncakeTraceAdapter {
    struct Record: Decodable {
        var timestamp: Double?
        var input_length: Int?
        var output_length: Int?
        var hash_ids: [UInt64]?
    }

    static let blockTokens = 512

    static func parse(_ text: String, path: String, skipBadLines: Bool) throws(TraceError) -> LoadedTrace {
        var sink = BadLineSink(path: path, skip: skipBadLines)
        var requests: [TraceRequest] = []
        let decoder = JSONDecoder()
        var lineNumber = 0
        var first: Double? = nil
        for line in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline) {
            lineNumber += 1
            if line.allSatisfy({ $0 == " " || $0 == "\t" || $0 == "\r" }) { continue }
            guard let r = try? decoder.decode(Record.self, from: Data(line.utf8)) else {
                try sink.report(line: lineNumber, "not a JSON object with Mooncake fields")
                continue
            }
            guard let ts = r.timestamp, let input = r.input_length, input > 0, let output = r.output_length, output >= 0 else {
                try sink.report(line: lineNumber, "timestamp, input_length or output_length missing or invalid")
                continue
            }
            if first == nil { first = ts }
            requests.append(TraceRequest(arrival: (ts - first!) / 1000, inputTokens: input, outputTokens: output,
                                         hashIDs: r.hash_ids ?? [], hashBlockTokens: blockTokens))
        }
        guard !requests.isEmpty else { throw .empty(path: path) }
        return LoadedTrace(requests: requests, format: .mooncake, skippedLines: sink.skipped,
                           firstSkipped: sink.first, hasTimestamps: true)
    }
}
