import Foundation
import KVScheduler

/// Reads Mooncake-format JSONL traces: one request per line with `timestamp` (milliseconds),
/// `input_length`, `output_length` and `hash_ids` (prefix-block ids: equal id = same prefix up to
/// and including that block; `blockTokens` tokens per id, the last one possibly partial).
///
/// A line is malformed when it is not a JSON object, lacks a field, has a negative or non-integer
/// length, or has `hash_ids.count != ceil(input_length / blockTokens)`; the error names the file and
/// the 1-based line (or, with `skipBadLines`, the line is counted and skipped). Blank lines are
/// ignored. O(file size). Files are read through `TraceLoader` (which also inflates gzip).
public enum MooncakeTrace {
    private struct Row: Decodable {
        var timestamp: Double
        var input_length: Int
        var output_length: Int
        var hash_ids: [Int64]
    }

    /// Parses a whole JSONL document; `path` only labels errors.
    public static func parse(_ data: Data, path: String, blockTokens: Int = 512,
                             skipBadLines: Bool = false) throws(TraceError) -> LoadedTrace {
        var sink = BadLineSink(path: path, skip: skipBadLines)
        var requests: [TraceRequest] = []
        let decoder = JSONDecoder()
        var firstTime: Double? = nil
        try JSONLines.forEachLine(in: [UInt8](data)) { (line, lineNumber) throws(TraceError) in
            let row: Row
            do { row = try decoder.decode(Row.self, from: Data(line)) } catch {
                try sink.report(line: lineNumber, "not a Mooncake record: \(Self.describe(error))")
                return
            }
            guard row.input_length >= 0, row.output_length >= 0, row.timestamp.isFinite else {
                try sink.report(line: lineNumber, "negative length or invalid timestamp")
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
            if firstTime == nil { firstTime = row.timestamp }
            requests.append(TraceRequest(arrival: (row.timestamp - firstTime!) / 1000, inputTokens: row.input_length,
                                         outputTokens: row.output_length, hashIDs: row.hash_ids.map { UInt64($0) },
                                         hashBlockTokens: blockTokens))
        }
        guard !requests.isEmpty else { throw .empty(path: path) }
        return LoadedTrace(requests: requests, format: .mooncake, skippedLines: sink.skipped,
                           firstSkipped: sink.first, hasTimestamps: true)
    }

    private static func describe(_ error: Error) -> String {
        switch error as? DecodingError {
        case .keyNotFound(let key, _): "missing field '\(key.stringValue)'"
        case .typeMismatch(_, let c), .valueNotFound(_, let c):
            "field '\(c.codingPath.map(\.stringValue).joined(separator: "."))' has the wrong type"
        case .dataCorrupted: "invalid JSON"
        default: "invalid JSON"
        }
    }
}
