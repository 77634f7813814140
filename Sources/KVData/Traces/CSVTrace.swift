import Foundation

/// Reads the CSV trace formats: Azure LLM inference (`TIMESTAMP,ContextTokens,GeneratedTokens`),
/// Vidur / Splitwise (`arrived_at,num_prefill_tokens,num_decode_tokens`, arrival optional) and BurstGPT
/// (`Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type`).
///
/// Columns are found by header name, in any order (`CSV` splits the rows). Arrivals are made relative
/// to the first row and follow `ArrivalClock`'s rule (finite, non-decreasing, bounded span); token
/// counts lie in `0...DataLimits.maxTokensPerRequest` (input at least 1). A bad row is a `DataError.badLine` (or, with `skipBadLines`, counted and skipped).
/// O(n) in the file size; memory holds the requests and one piece of the file.
public enum CSVTrace {
    /// Reads `source` (a whole CSV file) as `format`.
    public static func read(_ source: ByteSource, format: TraceFormat,
                            skipBadLines: Bool = false) throws(DataError) -> LoadedTrace {
        let path = source.path
        var sink = BadLineSink(path: path, skip: skipBadLines)
        var budget = RecordBudget(path: path)
        var requests: [TraceRequest] = []
        var columns: Columns? = nil
        var clock = ArrivalClock(unitsPerSecond: 1)
        let limit = DataLimits.maxTokensPerRequest
        var fields: [Substring] = []
        try JSONLines.forEachLine(in: source) { (bytes, lineNumber) throws(DataError) in
            let text = String(decoding: bytes, as: UTF8.self)
            CSV.splitFields(text[...], into: &fields)
            guard let cols = columns else {
                columns = try Columns(header: fields, format: format, path: path, line: lineNumber)
                return
            }
            guard fields.count >= cols.width else {
                try sink.report(line: lineNumber, "expected \(cols.width) fields, found \(fields.count)")
                return
            }
            guard let input = Int(fields[cols.input].trimmingCharacters(in: .whitespaces)), (1...limit).contains(input) else {
                try sink.report(line: lineNumber, "input tokens '\(fields[cols.input].prefix(40))' is not an integer in 1...\(limit)")
                return
            }
            guard let output = Int(fields[cols.output].trimmingCharacters(in: .whitespaces)), (0...limit).contains(output) else {
                try sink.report(line: lineNumber, "output tokens '\(fields[cols.output].prefix(40))' is not an integer in 0...\(limit)")
                return
            }
            let modelBytes = cols.model.map { fields[$0].utf8.count } ?? 0
            var arrival = 0.0
            if let tc = cols.time {
                let field = fields[tc].trimmingCharacters(in: .whitespaces)
                guard let t = format == .azure ? CSV.parseDateTime(field) ?? Double(field) : Double(field) else {
                    try sink.report(line: lineNumber, "timestamp '\(field.prefix(40))' is not a time")
                    return
                }
                switch clock.arrival(of: t) {
                case let .success(a): arrival = a
                case let .failure(refusal):
                    try sink.report(line: lineNumber, refusal.description)
                    return
                }
                try budget.add(line: lineNumber, textBytes: modelBytes)
                clock.accept(t)
            } else {
                try budget.add(line: lineNumber, textBytes: modelBytes)
            }
            let model = cols.model.map { String(fields[$0].trimmingCharacters(in: .whitespaces)) }
            requests.append(TraceRequest(arrival: arrival, inputTokens: input, outputTokens: output, model: model))
        }
        guard columns != nil, !requests.isEmpty else { throw .empty(path: path) }
        return LoadedTrace(requests: requests, format: format, skippedLines: sink.skipped,
                           firstSkipped: sink.first, hasTimestamps: columns?.time != nil)
    }

    /// Where the needed fields sit in a row.
    struct Columns {
        var time: Int?
        var input: Int
        var output: Int
        var model: Int?
        var width: Int

        init(header: [Substring], format: TraceFormat, path: String, line: Int) throws(DataError) {
            let names = header.map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
            func find(_ candidates: [String]) -> Int? { names.firstIndex { candidates.contains($0) } }
            let spec: (time: [String], input: [String], output: [String], model: [String])
            switch format {
            case .azure: spec = (["timestamp"], ["contexttokens"], ["generatedtokens"], [])
            case .vidur: spec = (["arrived_at", "arrival_time"], ["num_prefill_tokens"], ["num_decode_tokens"], [])
            case .burstgpt: spec = (["timestamp"], ["request tokens"], ["response tokens"], ["model"])
            default: throw .badLine(path: path, line: line, reason: "\(format.rawValue) is not a CSV format")
            }
            guard let i = find(spec.input), let o = find(spec.output) else {
                throw .badLine(path: path, line: line, reason: "header lacks the \(format.rawValue) columns \(spec.input[0]), \(spec.output[0])")
            }
            input = i
            output = o
            time = find(spec.time)
            if time == nil && format != .vidur {
                throw .badLine(path: path, line: line, reason: "header lacks the \(format.rawValue) column \(spec.time[0])")
            }
            model = find(spec.model)
            width = [input, output, time ?? 0, model ?? 0].max()! + 1
        }
    }
}
