import Foundation

/// Reads RAGPulse traces (a university RAG service's requests): `N_trace*.jsonl` lines of `timestamp`
/// (seconds, a string or a number), `input_length`, `output_length`, `session_id` and `hash_ids`, an
/// object of segment ids per kind, joined with the side files `N_<kind>.jsonl` (`1_sys_prompt.jsonl`,
/// `2_passages.jsonl`, `3_history.jsonl`, `4_user_input.jsonl`, `5_web_search.jsonl`) that map each id to
/// its `token_length`.
///
/// A request's prompt is its segments in the order sys_prompt, passages_ids, history, web_search,
/// user_input (one segment per id), then `input_length - sum` template tokens that are never reused.
/// Segments are kept dense: one array of all segments and each request's start in it.
///
/// Malformed input is a `DataError` naming the file and the 1-based line (`FILE:LINE: reason`): a line
/// that is not a JSON object of the fields above; a length outside 0...2^30 or a negative or too-large
/// id (at or above 2^56); an id missing from its side file; segments longer in sum than `input_length`;
/// one id given two lengths in a side file. With `skipBadLines` a bad trace line is counted and skipped
/// (side files must be well-formed). O(file sizes); memory holds the side tables and the segments.
public enum RAGPulse {
    /// The kinds of segment, in prompt order.
    public enum Kind: UInt8, Sendable, CaseIterable {
        case sysPrompt, passages, history, webSearch, userInput

        /// The key in a trace line's `hash_ids`.
        public var traceField: String {
            switch self {
            case .sysPrompt: "sys_prompt"
            case .passages: "passages_ids"
            case .history: "history"
            case .webSearch: "web_search"
            case .userInput: "user_input"
            }
        }

        /// The side file's name after `N_` and before `.jsonl`.
        public var sideFileStem: String {
            switch self {
            case .sysPrompt: "sys_prompt"
            case .passages: "passages"
            case .history: "history"
            case .webSearch: "web_search"
            case .userInput: "user_input"
            }
        }

        /// The id field of a side-file line.
        public var idField: String {
            switch self {
            case .passages: "passage_id"
            default: sideFileStem + "_id"
            }
        }
    }

    /// One segment of a prompt: a kind, its id and its length in tokens.
    public struct Segment: Sendable, Equatable {
        public var kind: Kind
        public var id: Int64
        public var tokens: Int
        public init(kind: Kind, id: Int64, tokens: Int) { self.kind = kind; self.id = id; self.tokens = tokens }

        /// (kind, id) in one word: equal for the same content wherever it appears.
        @inlinable public var identity: UInt64 { UInt64(kind.rawValue) << 56 | UInt64(id) }
    }

    /// A RAGPulse trace: the requests (for any replay) and their segments.
    public struct Trace: Sendable {
        /// Arrival, lengths and session of each request, in file order (no hash ids: see `segments`).
        public var trace: LoadedTrace
        /// Every request's segments, request after request.
        public var segments: [Segment]
        /// Request i's segments are `segments[segmentStart[i] ..< segmentStart[i + 1]]`; count + 1 entries.
        public var segmentStart: [Int]

        /// Request `i`'s segments in prompt order. O(1).
        public func segments(of i: Int) -> ArraySlice<Segment> { segments[segmentStart[i] ..< segmentStart[i + 1]] }
        /// Request `i`'s template tokens (never reused): input length minus its segments. O(segments).
        public func templateTokens(of i: Int) -> Int {
            trace.requests[i].inputTokens - segments(of: i).reduce(0) { $0 + $1.tokens }
        }
    }

    static let maxLength = 1 << 30
    static let maxID: Int64 = 1 << 56

    /// Reads the trace at `path` with the side files in `sideFiles` (default: the trace's folder).
    public static func load(path: String, sideFiles: String? = nil, skipBadLines: Bool = false) throws(DataError) -> Trace {
        try read(ByteSource(path: path), sideFiles: sideFiles, skipBadLines: skipBadLines)
    }

    /// Reads `source` with the side files in `sideFiles` (default: the folder of `source.path`).
    public static func read(_ source: ByteSource, sideFiles: String? = nil, skipBadLines: Bool = false) throws(DataError) -> Trace {
        let folder = sideFiles ?? (source.path as NSString).deletingLastPathComponent
        let tables = try sideTables(folder: folder.isEmpty ? "." : folder)
        return try readTrace(source, tables: tables, skipBadLines: skipBadLines)
    }

    private struct TraceRow: Decodable {
        var timestamp: Double
        var input_length: Int
        var output_length: Int
        var hash_ids: [String: [Int64]]
        var session_id: String?

        enum CodingKeys: String, CodingKey { case timestamp, input_length, output_length, hash_ids, session_id }
        init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            if let text = try? c.decode(String.self, forKey: .timestamp) {
                guard let t = Double(text) else {
                    throw DecodingError.dataCorruptedError(forKey: .timestamp, in: c, debugDescription: "timestamp is not a number")
                }
                timestamp = t
            } else {
                timestamp = try c.decode(Double.self, forKey: .timestamp)
            }
            input_length = try c.decode(Int.self, forKey: .input_length)
            output_length = try c.decode(Int.self, forKey: .output_length)
            hash_ids = try c.decode([String: [Int64]].self, forKey: .hash_ids)
            session_id = try c.decodeIfPresent(String.self, forKey: .session_id)
        }
    }

    private struct SideRow: Decodable {
        var token_length: Int
        var ids: [String: Int64]
        struct AnyKey: CodingKey {
            var stringValue: String
            var intValue: Int? { nil }
            init(stringValue: String) { self.stringValue = stringValue }
            init?(intValue: Int) { nil }
        }
        init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: AnyKey.self)
            token_length = try c.decode(Int.self, forKey: AnyKey(stringValue: "token_length"))
            var ids: [String: Int64] = [:]
            for k in c.allKeys where k.stringValue.hasSuffix("_id") { ids[k.stringValue] = try c.decode(Int64.self, forKey: k) }
            self.ids = ids
        }
    }

    /// Lengths of every id of every kind, from the folder's `N_<kind>.jsonl` files.
    static func sideTables(folder: String) throws(DataError) -> [[Int64: Int]] {
        var tables: [[Int64: Int]] = []
        for kind in Kind.allCases {
            let candidates = try FolderListing.files(in: folder, suffixes: ["_\(kind.sideFileStem).jsonl"]).filter { path in
                let name = (path as NSString).lastPathComponent
                let digits = name.prefix { $0.isNumber }
                return !digits.isEmpty && name.dropFirst(digits.count) == "_\(kind.sideFileStem).jsonl"
            }
            guard let file = candidates.first else { throw .missingFile(folder: folder, pattern: "N_\(kind.sideFileStem).jsonl") }
            var table: [Int64: Int] = [:]
            try JSONLines.forEachLine(in: try ByteSource(path: file)) { (line, number) throws(DataError) in
                let row = try JSONLines.decode(SideRow.self, line, path: file, line: number)
                guard let id = row.ids[kind.idField] else {
                    throw .badLine(path: file, line: number, reason: "no \(kind.idField)")
                }
                guard id >= 0, id < maxID else { throw .badLine(path: file, line: number, reason: "\(kind.idField) \(id) out of range") }
                guard row.token_length >= 0, row.token_length <= maxLength else {
                    throw .badLine(path: file, line: number, reason: "token_length \(row.token_length) out of range")
                }
                if let old = table[id], old != row.token_length {
                    throw .badLine(path: file, line: number, reason: "\(kind.idField) \(id) given lengths \(old) and \(row.token_length)")
                }
                table[id] = row.token_length
            }
            tables.append(table)
        }
        return tables
    }

    private static func readTrace(_ source: ByteSource, tables: [[Int64: Int]], skipBadLines: Bool) throws(DataError) -> Trace {
        let path = source.path
        var sink = BadLineSink(path: path, skip: skipBadLines)
        var requests: [TraceRequest] = []
        var segments: [Segment] = []
        var starts: [Int] = [0]
        var firstTime: Double? = nil
        var request: [Segment] = []
        try JSONLines.forEachLine(in: source) { (line, number) throws(DataError) in
            let row: TraceRow
            do throws(DataError) { row = try JSONLines.decode(TraceRow.self, line, path: path, line: number) } catch {
                try sink.report(error)
                return
            }
            guard (0 ... maxLength).contains(row.input_length), (0 ... maxLength).contains(row.output_length),
                  row.timestamp.isFinite, row.timestamp >= 0 else {
                try sink.report(line: number, "length outside 0...\(maxLength) or invalid timestamp")
                return
            }
            request.removeAll(keepingCapacity: true)
            var sum = 0
            for kind in Kind.allCases {
                for id in row.hash_ids[kind.traceField] ?? [] {
                    guard id >= 0, id < maxID else { try sink.report(line: number, "\(kind.traceField) id \(id) out of range"); return }
                    guard let tokens = tables[Int(kind.rawValue)][id] else {
                        try sink.report(line: number, "\(kind.traceField) id \(id) is not in the \(kind.sideFileStem) side file")
                        return
                    }
                    request.append(Segment(kind: kind, id: id, tokens: tokens))
                    sum += tokens
                }
            }
            guard sum <= row.input_length else {
                try sink.report(line: number, "segments hold \(sum) tokens, more than input_length \(row.input_length)")
                return
            }
            if firstTime == nil { firstTime = row.timestamp }
            requests.append(TraceRequest(arrival: row.timestamp - firstTime!, inputTokens: row.input_length,
                                         outputTokens: row.output_length, session: row.session_id))
            segments.append(contentsOf: request)
            starts.append(segments.count)
        }
        guard !requests.isEmpty else { throw .empty(path: path) }
        return Trace(trace: LoadedTrace(requests: requests, format: .ragpulse, skippedLines: sink.skipped,
                                        firstSkipped: sink.first, hasTimestamps: true),
                     segments: segments, segmentStart: starts)
    }
}
