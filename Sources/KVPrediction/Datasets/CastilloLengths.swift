import KVData
import KVScheduler

extension LengthDataSet {
    /// CASTILLO as length examples: each (prompt, model) row of the lengths file joined to its prompt
    /// text (both files read by `KVData.Castillo`).
    ///
    /// Target: the mean of the row's sampled output lengths (`Castillo.Target.meanOfSamples`; the replay
    /// takes `output_sizes[0]` instead), with the model id given to the predictor as a feature and every
    /// sample kept in `LengthExample.samples` so that reservation quantiles are evaluated against single
    /// generations. Split: by prompt, from the prompts file's `split` field (`train` trains; anything else
    /// is held out); prompts without a split fall back to `hashSplitHeldOut` of the prompt id. A row whose
    /// prompt is unknown is counted in `skippedRecords`; a row without `prompt_id` or `model` is an error.
    ///
    /// - Parameters:
    ///   - modelID: keep only this model's rows.
    ///   - taskAsTemplate: give the dataset name (the task, e.g. `Alpaca`) to the predictors as `templateKey`.
    /// - Complexity: O(n) in the (inflated) size of both files.
    public static func castillo(folder: String, modelID: String? = nil,
                                taskAsTemplate: Bool = false) throws(DataError) -> LengthDataSet {
        let files = try Castillo.files(in: folder)
        return try castillo(lengths: ByteSource(path: files.lengths), prompts: ByteSource(path: files.prompts),
                            modelID: modelID, taskAsTemplate: taskAsTemplate)
    }

    /// CASTILLO from its two sources (see `castillo(folder:modelID:taskAsTemplate:)`).
    public static func castillo(lengths: ByteSource, prompts: ByteSource, modelID: String? = nil,
                                taskAsTemplate: Bool = false) throws(DataError) -> LengthDataSet {
        let promptRows = try Castillo.readPrompts(prompts)
        let rows = try Castillo.readLengths(lengths).rows
        var examples: [LengthExample] = []
        var skipped = 0
        for row in rows {
            guard let promptID = row.promptID, let model = row.model else {
                throw .badLine(path: lengths.path, line: row.line, reason: "missing field \"\(row.promptID == nil ? "prompt_id" : "model")\"")
            }
            if let modelID, model != modelID { continue }
            guard let prompt = promptRows[promptID] else { skipped += 1; continue }
            let split = (prompt.split ?? row.split)?.lowercased()
            let heldOut = split.map { $0 != "train" } ?? hashSplitHeldOut(promptID)
            let source = prompt.dataset ?? row.dataset
            let task = taskAsTemplate ? source.map { StableHash.fnv1a($0) } : nil
            let input = PredictionInput(promptTokens: row.inputSize, promptText: prompt.prompt_text,
                                        templateKey: task, modelID: model,
                                        maxTokens: LengthExample.unboundedMaxTokens)
            examples.append(LengthExample(input: input, target: row.output(.meanOfSamples),
                                          samples: row.outputSizes.map { Int32($0) },
                                          group: promptID, heldOut: heldOut, source: source))
        }
        return LengthDataSet(examples: examples, skippedRecords: skipped)
    }
}
