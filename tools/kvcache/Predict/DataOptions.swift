import ArgumentParser
import Foundation
import KVBench
import KVCache
import KVData
import KVPrediction
import KVScheduler

extension PredictCommand {
    /// Options shared by `train` and `eval`.
    struct DataOptions: ParsableArguments {
        @Option(help: "A CASTILLO folder (*lengths*.jsonl[.gz] + *prompts*.jsonl[.gz]) or ShareGPT JSON[L][.gz] file or folder.")
        var data: String
        @Option(help: "castillo, sharegpt, mooncake (lengths only: for --history), or auto (a folder with a *lengths* file is CASTILLO, a file with \"hash_ids\" Mooncake, else ShareGPT).")
        var format: DataFormat = .auto
        @Option(name: .customLong("model-id"),
                help: "CASTILLO: keep only this model's rows. ShareGPT: the model id given to every request.")
        var modelID: String?
        @Option(help: "How to split train/held-out, always by prompt or conversation: `data` uses the data's own split (CASTILLO's split field: train vs validate; ShareGPT: hash), `hash` holds out one prompt in five by a stable hash of its id.")
        var split: SplitRule = .data
        @Option(name: .customLong("context-bytes"),
                help: "ShareGPT: prefix each later turn's prompt text with this many trailing bytes of the previous reply (0: the turn alone). Give train and eval the same value.")
        var contextBytes = 3000
        @Flag(name: .customLong("task-id"),
              help: "CASTILLO: give the dataset name (the task) to the predictors as the template key.")
        var taskID = false

        func validate() throws {
            guard (0...(1 << 20)).contains(contextBytes) else { throw ValidationError("--context-bytes must be in 0...1048576") }
        }

        func load() throws -> (LengthDataSet, DataFormat) {
            var resolved = format
            if resolved == .auto {
                if FolderListing.isFolder(data) {
                    let lengths = (try? FolderListing.files(in: data, suffixes: [""], containing: "lengths")) ?? []
                    resolved = lengths.isEmpty ? .sharegpt : .castillo
                } else {
                    let detected: TraceFormat?
                    do { detected = try TraceLoader.detect(ByteSource(path: data)) } catch { throw CLIError(error.description) }
                    resolved = detected == .mooncake ? .mooncake : .sharegpt
                }
            }
            var set: LengthDataSet
            do {
                switch resolved {
                case .castillo: set = try LengthDataSet.castillo(folder: data, modelID: modelID, taskAsTemplate: taskID)
                case .mooncake: set = try LengthDataSet.mooncake(path: data)
                default: set = try LengthDataSet.shareGPT(path: data, modelID: modelID, contextBytes: contextBytes)
                }
            } catch {
                throw CLIError(error.description)
            }
            if split == .hash { set.splitByGroupHash() }
            if set.skippedRecords > 0 {
                note("skipped \(set.skippedRecords) records without a usable prompt or reply")
            }
            if set.examples.isEmpty { throw CLIError("no examples in \(data)") }
            return (set, resolved)
        }
    }
}
