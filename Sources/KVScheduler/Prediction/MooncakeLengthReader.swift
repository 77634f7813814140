/// Reads a Mooncake-style JSONL trace (`timestamp`, `input_length`, `output_length`, `hash_ids`) as
/// length examples for the history predictor: traces without text.
///
/// The template key is the first prefix-block hash id (usually the system prompt). The split is by
/// time: requests arriving before the median arrival train (warm up) the predictor, the later ones
/// are held out, and evaluation replays them in arrival order.
public enum MooncakeLengthReader {
    struct Row: Decodable {
        var timestamp: Double?
        var input_length: Int
        var output_length: Int
        var hash_ids: [UInt64]?
    }

    /// Parses a file's bytes. O(n log n) for the time sort.
    public static func parse(_ bytes: [UInt8], file: String) throws(LengthDataError) -> LengthDataSet {
        var rows: [(time: Double, line: Int, example: LengthExample)] = []
        try JSONLines.forEachLine(in: bytes) { (line, number) throws(LengthDataError) in
            let row = try JSONLines.decode(Row.self, line, file: file, lineNumber: number)
            guard row.input_length >= 0, row.output_length >= 0, row.output_length <= Int(Int32.max) else {
                throw .malformedLine(file: file, line: number, reason: "negative or huge length")
            }
            let input = PredictionInput(promptTokens: row.input_length, templateKey: row.hash_ids?.first,
                                        maxTokens: LengthExample.unboundedMaxTokens)
            let example = LengthExample(input: input, target: Double(row.output_length),
                                        samples: [Int32(row.output_length)], group: "\(number)", heldOut: false)
            rows.append((row.timestamp ?? Double(number), number, example))
        }
        rows.sort { ($0.time, $0.line) < ($1.time, $1.line) }
        var examples = rows.map(\.example)
        for i in examples.indices { examples[i].heldOut = i >= examples.count / 2 }
        return LengthDataSet(examples: examples)
    }

    /// Loads a file (optionally gzip).
    public static func load(path: String) throws(LengthDataError) -> LengthDataSet {
        try parse(try CompressedFile.readAll(path: path), file: path)
    }
}
