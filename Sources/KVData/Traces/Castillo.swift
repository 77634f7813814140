/// Reads CASTILLO: a lengths JSONL (one row per (prompt, model): `prompt_id, model, dataset,
/// input_size, output_sizes[10]`, optionally `output_mean`, `split`) and a prompts JSONL
/// (`prompt_id, dataset, split, prompt_text`), each optionally gzip.
///
/// The one CASTILLO reader, for the replay and for the predictors. The two legitimately want
/// different targets from one row, so the choice is explicit (`Target`): the replay takes one real
/// draw (`output_sizes[0]`) as the request's output, the predictors train on the mean of the samples
/// (what a scheduler packs on average) and keep every sample for the reservation quantiles.
/// A row is malformed when it is not a JSON object, has no `input_size` in
/// `1...DataLimits.maxTokensPerRequest`, has neither `output_sizes` nor `output_mean`, has more than
/// `DataLimits.maxSamplesPerRow` samples, or has an output length (or a mean) outside
/// `0...DataLimits.maxTokensPerRequest`. O(n) in the file size; `RecordBudget` bounds what is kept.
public enum Castillo {
    /// Which output length of a row a consumer takes.
    public enum Target: Sendable {
        /// `output_sizes[0]` (or the rounded `output_mean` when there are no samples): one real draw.
        case firstSample
        /// The mean of `output_sizes` (or `output_mean`).
        case meanOfSamples
    }

    /// One lengths row.
    public struct LengthRow: Sendable {
        /// The 1-based line it came from.
        public var line: Int
        public var promptID: String?
        public var model: String?
        public var dataset: String?
        public var split: String?
        public var inputSize: Int
        /// The sampled output lengths (CASTILLO: 10 per row); may be empty when only a mean is given.
        public var outputSizes: [Int]
        public var outputMean: Double?

        /// The row's output length under `target`.
        public func output(_ target: Target) -> Double {
            switch target {
            case .firstSample:
                return outputSizes.first.map(Double.init) ?? outputMean!.rounded()
            case .meanOfSamples:
                guard !outputSizes.isEmpty else { return outputMean! }
                return Double(outputSizes.reduce(0, +)) / Double(outputSizes.count)
            }
        }
    }

    /// One prompts row.
    public struct PromptRow: Decodable, Sendable {
        public var prompt_id: String
        public var dataset: String?
        public var split: String?
        public var prompt_text: String
    }

    private struct Record: Decodable {
        var prompt_id: String?
        var model: String?
        var dataset: String?
        var split: String?
        var input_size: Int?
        var output_sizes: [Int]?
        var output_mean: Double?
    }

    /// The lengths rows of `source`, in file order, with the skipped count and first skipped row.
    public static func readLengths(_ source: ByteSource, skipBadLines: Bool = false) throws(DataError)
        -> (rows: [LengthRow], skipped: Int, firstSkipped: String?) {
        var sink = BadLineSink(path: source.path, skip: skipBadLines)
        var budget = RecordBudget(path: source.path)
        var rows: [LengthRow] = []
        let limit = DataLimits.maxTokensPerRequest
        try JSONLines.forEachLine(in: source) { (line, number) throws(DataError) in
            let r: Record
            do throws(DataError) { r = try JSONLines.decode(Record.self, line, path: source.path, line: number) } catch {
                try sink.report(error)
                return
            }
            guard let input = r.input_size, (1...limit).contains(input) else {
                try sink.report(line: number, "input_size missing or outside 1...\(limit)")
                return
            }
            let sizes = r.output_sizes ?? []
            guard !sizes.isEmpty || r.output_mean != nil else {
                try sink.report(line: number, "output_sizes missing or empty")
                return
            }
            guard sizes.count <= DataLimits.maxSamplesPerRow else {
                try sink.report(line: number, "\(sizes.count) output_sizes (the limit is \(DataLimits.maxSamplesPerRow))")
                return
            }
            guard sizes.allSatisfy({ (0...limit).contains($0) }),
                  r.output_mean.map({ $0 >= 0 && $0 <= Double(limit) }) ?? true else {
                try sink.report(line: number, "an output length or output_mean outside 0...\(limit)")
                return
            }
            let kept = (r.prompt_id?.utf8.count ?? 0) + (r.model?.utf8.count ?? 0) + (r.dataset?.utf8.count ?? 0)
                + (r.split?.utf8.count ?? 0)
            try budget.add(line: number, textBytes: kept)
            rows.append(LengthRow(line: number, promptID: r.prompt_id, model: r.model, dataset: r.dataset,
                                  split: r.split, inputSize: input, outputSizes: sizes, outputMean: r.output_mean))
        }
        return (rows, sink.skipped, sink.first)
    }

    /// The prompts of `source` by prompt id. A row without a prompt id or text is malformed; the rows
    /// kept are bounded by `RecordBudget`. O(n).
    public static func readPrompts(_ source: ByteSource) throws(DataError) -> [String: PromptRow] {
        var prompts: [String: PromptRow] = [:]
        var budget = RecordBudget(path: source.path)
        try JSONLines.forEachLine(in: source) { (line, number) throws(DataError) in
            let record = try JSONLines.decode(PromptRow.self, line, path: source.path, line: number)
            if record.prompt_id.isEmpty { throw .badLine(path: source.path, line: number, reason: "empty prompt_id") }
            try budget.add(line: number, textBytes: line.count)
            prompts[record.prompt_id] = record
        }
        return prompts
    }

    /// The lengths and prompts files of a CASTILLO folder (`*lengths*.jsonl[.gz]`, `*prompts*.jsonl[.gz]`;
    /// the first by name when several match).
    public static func files(in folder: String) throws(DataError) -> (lengths: String, prompts: String) {
        func find(_ word: String) throws(DataError) -> String {
            let match = try FolderListing.files(in: folder, suffixes: [".jsonl", ".jsonl.gz"], containing: word).first
            guard let match else { throw .missingFile(folder: folder, pattern: "*\(word)*.jsonl[.gz]") }
            return match
        }
        return (try find("lengths"), try find("prompts"))
    }

    /// The lengths file as a trace: one request per row, prompt `input_size`, output `output_sizes[0]`
    /// (`Target.firstSample`), model kept, every arrival 0 (the data has no times). The prompt id is not
    /// a session: the same prompt recurs for each model, independently.
    public static func trace(_ source: ByteSource, skipBadLines: Bool = false) throws(DataError) -> LoadedTrace {
        let (rows, skipped, first) = try readLengths(source, skipBadLines: skipBadLines)
        let requests = rows.map {
            TraceRequest(arrival: 0, inputTokens: $0.inputSize, outputTokens: Int($0.output(.firstSample)), model: $0.model)
        }
        guard !requests.isEmpty else { throw .empty(path: source.path) }
        return LoadedTrace(requests: requests, format: .castillo, skippedLines: skipped, firstSkipped: first,
                           hasTimestamps: false)
    }
}
