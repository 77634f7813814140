import Foundation

/// Reads a CASTILLO folder: a `*lengths*.jsonl[.gz]` file (one row per (prompt, model) with 10
/// sampled output lengths) and a `*prompts*.jsonl[.gz]` file (prompt text and split).
///
/// Target: the mean of the sampled output lengths of each (prompt, model) pair, with the model id
/// given to the predictor as a feature. The mean is what a scheduler needs to pack batches on
/// average, and the individual samples stay in `LengthExample.samples` so that reservation
/// quantiles can be evaluated against single generations.
///
/// Split: by prompt, from the prompts file's `split` field (`train` trains; `validate`,
/// `validation`, `test` are held out); prompts without a split fall back to a stable hash of the
/// prompt id. Rows are never split individually, so one prompt never appears on both sides.
public enum CastilloReader {
    public struct PromptRecord: Decodable, Sendable {
        public var prompt_id: String
        public var dataset: String?
        public var split: String?
        public var prompt_text: String
    }

    struct LengthRecord: Decodable {
        var prompt_id: String
        var model: String
        var input_size: Int
        var output_sizes: [Int]
        var dataset: String?
        var split: String?
    }

    /// Loads the folder. `modelID`, when given, keeps only that model's rows; `taskAsTemplate` gives
    /// the dataset name (the task, e.g. `Alpaca`) to the predictors as `templateKey`.
    ///
    /// - Complexity: O(n) in the decompressed size of both files.
    public static func load(folder: String, modelID: String? = nil,
                            taskAsTemplate: Bool = false) throws(LengthDataError) -> LengthDataSet {
        let lengthsPath = try findFile(in: folder, containing: "lengths")
        let promptsPath = try findFile(in: folder, containing: "prompts")
        let prompts = try parsePrompts(try CompressedFile.readAll(path: promptsPath), file: promptsPath)
        return try parseLengths(try CompressedFile.readAll(path: lengthsPath), file: lengthsPath,
                                prompts: prompts, modelID: modelID, taskAsTemplate: taskAsTemplate)
    }

    /// Parses the prompts file into a map from prompt id to record. O(n).
    public static func parsePrompts(_ bytes: [UInt8], file: String) throws(LengthDataError) -> [String: PromptRecord] {
        var prompts: [String: PromptRecord] = [:]
        try JSONLines.forEachLine(in: bytes) { (line, number) throws(LengthDataError) in
            let record = try JSONLines.decode(PromptRecord.self, line, file: file, lineNumber: number)
            if record.prompt_id.isEmpty {
                throw .malformedLine(file: file, line: number, reason: "empty prompt_id")
            }
            prompts[record.prompt_id] = record
        }
        return prompts
    }

    /// Parses the lengths file, joining each row to its prompt. Rows whose prompt is unknown are
    /// counted in `skippedRecords`; rows with invalid lengths are errors. O(n).
    public static func parseLengths(_ bytes: [UInt8], file: String, prompts: [String: PromptRecord],
                                    modelID: String? = nil,
                                    taskAsTemplate: Bool = false) throws(LengthDataError) -> LengthDataSet {
        var examples: [LengthExample] = []
        var skipped = 0
        try JSONLines.forEachLine(in: bytes) { (line, number) throws(LengthDataError) in
            let row = try JSONLines.decode(LengthRecord.self, line, file: file, lineNumber: number)
            guard !row.output_sizes.isEmpty else {
                throw .malformedLine(file: file, line: number, reason: "empty output_sizes")
            }
            guard row.input_size >= 0, row.output_sizes.allSatisfy({ $0 >= 0 && $0 <= Int(Int32.max) }) else {
                throw .malformedLine(file: file, line: number, reason: "negative or huge length")
            }
            if let modelID, row.model != modelID { return }
            guard let prompt = prompts[row.prompt_id] else { skipped += 1; return }
            let split = (prompt.split ?? row.split)?.lowercased()
            let heldOut = split.map { $0 != "train" } ?? LengthDataSet.hashSplitHeldOut(row.prompt_id)
            let mean = Double(row.output_sizes.reduce(0, +)) / Double(row.output_sizes.count)
            let source = prompt.dataset ?? row.dataset
            let task = taskAsTemplate ? source.map { StableHash.fnv1a($0) } : nil
            let input = PredictionInput(promptTokens: row.input_size, promptText: prompt.prompt_text,
                                        templateKey: task, modelID: row.model,
                                        maxTokens: LengthExample.unboundedMaxTokens)
            examples.append(LengthExample(input: input, target: mean,
                                          samples: row.output_sizes.map { Int32($0) },
                                          group: row.prompt_id, heldOut: heldOut, source: source))
        }
        return LengthDataSet(examples: examples, skippedRecords: skipped)
    }

    static func findFile(in folder: String, containing word: String) throws(LengthDataError) -> String {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: folder)
        } catch {
            throw .cannotRead(path: folder, reason: "not a readable folder")
        }
        let match = names.sorted().first {
            $0.contains(word) && ($0.hasSuffix(".jsonl") || $0.hasSuffix(".jsonl.gz"))
        }
        guard let match else { throw .missingFile(folder: folder, pattern: "*\(word)*.jsonl[.gz]") }
        return folder.hasSuffix("/") ? folder + match : folder + "/" + match
    }
}
