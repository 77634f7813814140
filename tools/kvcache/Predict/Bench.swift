import ArgumentParser
import Foundation
import KVBench
import KVCache
import KVData
import KVPrediction
import KVScheduler

extension PredictCommand {
    struct Bench: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Measure the CPU time of one prediction (text and history predictors) on synthetic prompts.")

        @Option(name: .customLong("prompt-words"), help: "Mean words per synthetic prompt.")
        var promptWords = 60
        @Option(name: .customLong("hash-bits"), help: "log2 of the feature space size (8...24).")
        var hashBits = FeatureHashingConfig().hashBits
        @OptionGroup(title: "Report") var reportOutput: ReportOptions
    var json: Bool { reportOutput.machine }

        func run() throws {
            var hashing = FeatureHashingConfig()
            hashing.hashBits = hashBits
            guard (1...10_000).contains(promptWords), hashing.isValid else { throw CLIError("--prompt-words must be in 1...10000, --hash-bits in 8...24") }
            let r = PredictorBench.run(promptWords: promptWords, hashing: hashing)
            if json {
                try reportOutput.emit(command: "predict bench", object: .object([
                    ("text_ns_per_prediction", .double(r.textNanoseconds)), ("history_ns_per_prediction", .double(r.historyNanoseconds)),
                    ("mean_prompt_words", .double(r.meanPromptWords)),
                ]))
            } else {
                print(String(format: "text predictor: %.0f ns per prediction (%.0f-word prompts); history predictor: %.0f ns",
                             r.textNanoseconds, r.meanPromptWords, r.historyNanoseconds))
            }
        }
    }
}
