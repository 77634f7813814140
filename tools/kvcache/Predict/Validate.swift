import ArgumentParser
import Foundation
import KVBench
import KVCache
import KVData
import KVPrediction
import KVScheduler

extension PredictCommand {
    struct Validate: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Cross-validate training options inside the training split only (held-out examples are never used): one fold per source data set, or k folds by prompt hash.")

        enum FoldRule: String, ExpressibleByArgument, CaseIterable {
            case source, hash, cell
        }

        @OptionGroup var dataOptions: DataOptions
        @OptionGroup var trainingArguments: TrainingArguments
        @Option(help: "source: leave one source data set out at a time (CASTILLO's dataset field); hash: --k folds by prompt hash; cell: --k folds of (model, source) cells on prompts held out by hash, never trained on.")
        var folds: FoldRule = .source
        @Option(help: "Number of hash or cell folds.")
        var k = 5
        @OptionGroup(title: "Report") var reportOutput: ReportOptions
    var json: Bool { reportOutput.machine }

        func validate() throws {
            guard (2...100).contains(k) else { throw ValidationError("--k must be in 2...100") }
        }

        func run() throws {
            let (set, format) = try dataOptions.load()
            let options = try trainingArguments.options()
            let rule: ValidationFolds = switch folds {
            case .source: .source
            case .hash: .hash(k)
            case .cell: .cell(k)
            }
            let results: [ValidationFoldResult]
            do {
                results = try LengthCrossValidation.run(set.training, rule: rule, options: options) { r in
                    note(String(format: "%@: %d held out, mae_ratio %.3f (MAE %.1f, baseline %.1f), underpredict %.3f",
                                r.name, r.evaluation.examples, r.evaluation.maeRatio, r.evaluation.mae,
                                r.evaluation.baselineMAE, r.evaluation.underpredictRate))
                }
            } catch {
                throw CLIError(error.description)
            }
            let mean = LengthCrossValidation.meanRatio(results)
            if json {
                try reportOutput.emit(command: "predict validate", object: .object([
                    ("format", .string(format.rawValue)), ("folds", .string(folds.rawValue)), ("mean_mae_ratio", .double(mean)),
                    ("fold_mae_ratios", .object(results.map { ($0.name, .double($0.evaluation.maeRatio)) })),
                ]))
            } else {
                print(String(format: "mean mae_ratio over %d %@ folds of the training split: %.3f", results.count,
                             folds.rawValue, mean))
            }
        }
    }
}
