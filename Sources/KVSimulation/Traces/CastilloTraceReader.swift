import Foundation
import KVScheduler

/// Reads a CASTILLO lengths JSONL (`prompt_id, model, dataset, input_size, output_sizes[...]`) as one
/// request per record: prompt `input_size`, output the first sampled length (`output_sizes[0]`, a
/// real draw, not the mean), model kept. Arrivals are 0 (no times in the data).
public enum CastilloTraceReader {
    struct Record: Decodable {
        var prompt_id: String?
        var model: String?
        var input_size: Int?
        var output_sizes: [Int]?
        var output_mean: Double?
    }

    public static func parse(_ text: String, path: String, skipBadLines: Bool = false) throws(TraceError) -> LoadedTrace {
        var sink = BadLineSink(path: path, skip: skipBadLines)
        var requests: [TraceRequest] = []
        let decoder = JSONDecoder()
        try JSONLines.forEachLine(in: Array(text.utf8)) { (line, lineNumber) throws(TraceError) in
            guard let r = try? decoder.decode(Record.self, from: Data(line)) else {
                try sink.report(line: lineNumber, "not a JSON object with CASTILLO fields")
                return
            }
            guard let input = r.input_size, input > 0 else {
                try sink.report(line: lineNumber, "input_size missing or not positive")
                return
            }
            guard let output = r.output_sizes?.first ?? r.output_mean.map({ Int($0.rounded()) }), output >= 0 else {
                try sink.report(line: lineNumber, "output_sizes missing or negative")
                return
            }
            // The prompt id is not a session: the same prompt recurs for each model, independently.
            requests.append(TraceRequest(arrival: 0, inputTokens: input, outputTokens: output, model: r.model))
        }
        guard !requests.isEmpty else { throw .empty(path: path) }
        return LoadedTrace(requests: requests, format: .castillo, skippedLines: sink.skipped,
                           firstSkipped: sink.first, hasTimestamps: false)
    }
}
