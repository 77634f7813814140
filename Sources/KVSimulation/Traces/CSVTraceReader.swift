import Foundation

/// Reads the CSV trace formats: Azure LLM inference (`TIMESTAMP,ContextTokens,GeneratedTokens`),
/// Vidur / Splitwise (`arrived_at,num_prefill_tokens,num_decode_tokens`, arrival optional) and BurstGPT
/// (`Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type`).
///
/// Columns are found by header name, in any order. Plain comma-separated fields; a field in double
/// quotes may hold commas. Arrivals are made relative to the first row. O(n) in the file size.
public enum CSVTraceReader {
    /// Parses `text` (a whole CSV file) as `format`; `path` only labels errors.
    public static func parse(_ text: String, format: TraceFormat, path: String,
                             skipBadLines: Bool = false) throws(TraceError) -> LoadedTrace {
        var sink = BadLineSink(path: path, skip: skipBadLines)
        var requests: [TraceRequest] = []
        var columns: Columns? = nil
        var lineNumber = 0
        var firstTime: Double? = nil
        var fields: [Substring] = []
        for rawLine in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            lineNumber += 1
            let line = rawLine.hasSuffix("\r") ? rawLine.dropLast() : rawLine
            if line.allSatisfy({ $0 == " " || $0 == "\t" }) { continue }
            splitFields(line, into: &fields)
            guard let cols = columns else {
                columns = try Columns(header: fields, format: format, path: path, line: lineNumber)
                continue
            }
            guard fields.count >= cols.width else {
                try sink.report(line: lineNumber, "expected \(cols.width) fields, found \(fields.count)")
                continue
            }
            guard let input = Int(fields[cols.input].trimmingCharacters(in: .whitespaces)), input > 0 else {
                try sink.report(line: lineNumber, "input tokens '\(fields[cols.input])' is not a positive integer")
                continue
            }
            guard let output = Int(fields[cols.output].trimmingCharacters(in: .whitespaces)), output >= 0 else {
                try sink.report(line: lineNumber, "output tokens '\(fields[cols.output])' is not a non-negative integer")
                continue
            }
            var arrival = 0.0
            if let tc = cols.time {
                let field = fields[tc].trimmingCharacters(in: .whitespaces)
                guard let t = format == .azure ? parseDateTime(field) ?? Double(field) : Double(field), t.isFinite else {
                    try sink.report(line: lineNumber, "timestamp '\(field)' is not a time")
                    continue
                }
                if firstTime == nil { firstTime = t }
                arrival = t - firstTime!
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

        init(header: [Substring], format: TraceFormat, path: String, line: Int) throws(TraceError) {
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

    /// Splits one CSV row into fields (double quotes group commas; quotes are kept off the field).
    static func splitFields(_ line: Substring, into fields: inout [Substring]) {
        fields.removeAll(keepingCapacity: true)
        var start = line.startIndex
        var i = line.startIndex
        var quoted = false
        while i < line.endIndex {
            let c = line[i]
            if c == "\"" { quoted.toggle() } else if c == "," && !quoted {
                fields.append(unquote(line[start..<i]))
                start = line.index(after: i)
            }
            i = line.index(after: i)
        }
        fields.append(unquote(line[start..<line.endIndex]))
    }

    static func unquote(_ s: Substring) -> Substring {
        s.count >= 2 && s.first == "\"" && s.last == "\"" ? s.dropFirst().dropLast() : s
    }

    /// Seconds since 1970 of `YYYY-MM-DD HH:MM:SS[.fraction]` (or with `T`), read as UTC; nil if malformed.
    static func parseDateTime(_ s: String) -> Double? {
        let u = Array(s.utf8)
        guard u.count >= 19, u[4] == UInt8(ascii: "-"), u[7] == UInt8(ascii: "-"),
              u[10] == UInt8(ascii: " ") || u[10] == UInt8(ascii: "T"),
              u[13] == UInt8(ascii: ":"), u[16] == UInt8(ascii: ":") else { return nil }
        func num(_ a: Int, _ b: Int) -> Int? {
            var v = 0
            for k in a..<b { let d = Int(u[k]) - 48; guard d >= 0 && d <= 9 else { return nil }; v = v * 10 + d }
            return v
        }
        guard let y = num(0, 4), let mo = num(5, 7), let d = num(8, 10), let h = num(11, 13),
              let mi = num(14, 16), let se = num(17, 19), (1...12).contains(mo), (1...31).contains(d),
              h < 24, mi < 60, se < 61 else { return nil }
        var fraction = 0.0
        if u.count > 19 {
            var end = u.count
            if u[end - 1] == UInt8(ascii: "Z") { end -= 1 }
            guard u[19] == UInt8(ascii: "."), end > 20 else { return end == 19 ? 0 : nil }
            var scale = 0.1
            for k in 20..<end {
                let digit = Int(u[k]) - 48
                guard digit >= 0 && digit <= 9 else { return nil }
                fraction += Double(digit) * scale
                scale /= 10
            }
        }
        // Days from civil (Howard Hinnant's algorithm).
        let yy = mo <= 2 ? y - 1 : y
        let era = (yy >= 0 ? yy : yy - 399) / 400
        let yoe = yy - era * 400
        let doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        let days = era * 146097 + doe - 719468
        return Double(days * 86400 + h * 3600 + mi * 60 + se) + fraction
    }
}
