import ArgumentParser
import Foundation
import KVBench
import KVCache
import KVData
import KVPrediction
import KVScheduler

extension PredictCommand {
    struct Compare: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Train the bucketed logistic regression and boosted stumps on the same split and compare them on the held-out part.")

        @OptionGroup var dataOptions: DataOptions
        @Option(help: "Passes of the logistic regression.")
        var epochs = 6
        @Option(help: "Boosting rounds of the stumps.")
        var rounds = 400
        @OptionGroup var window: PromptWindowOptions
        @OptionGroup(title: "Report") var reportOutput: ReportOptions
    var json: Bool { reportOutput.machine }

        func validate() throws {
            guard (1...TextLengthTrainer.maxEpochs).contains(epochs) else { throw ValidationError("--epochs must be in 1...\(TextLengthTrainer.maxEpochs)") }
            guard (1...BoostedStumpsTrainer.maxRounds).contains(rounds) else { throw ValidationError("--rounds must be in 1...\(BoostedStumpsTrainer.maxRounds)") }
        }

        func run() throws {
            let (set, format) = try dataOptions.load()
            let training = set.training, heldOut = set.heldOut
            guard !training.isEmpty, !heldOut.isEmpty else { throw CLIError("the split leaves one side empty") }
            var hashing = FeatureHashingConfig()
            window.apply(to: &hashing)
            var lrOptions = TextTrainingOptions()
            lrOptions.hashing = hashing
            lrOptions.epochs = epochs
            var stumpOptions = StumpTrainingOptions()
            stumpOptions.hashing = hashing
            stumpOptions.rounds = rounds
            let sorted = training.map(\.target).sorted()
            let mean = sorted.reduce(0, +) / Double(sorted.count)
            let median = TextLengthTrainer.quantile(sorted, 0.5)
            let upper = TextLengthTrainer.quantile(sorted, 0.9)
            let fields: [(String, JSONValue)] = [("format", .string(format.rawValue)), ("train_examples", .int(training.count)),
                                                 ("held_out_examples", .int(heldOut.count))]
            var results: [JSONValue] = []
            func evaluate(_ name: String, _ predictor: any OutputLengthPredictor, seconds: Double) throws {
                let e = LengthEvaluator.evaluate(predictor, examples: heldOut, buckets: .standard, trainingMean: mean,
                                                 trainingMedian: median, trainingQuantile: upper, reserveQuantile: 0.9)
                let ns = PredictorBench.nanosecondsPerPrediction(predictor, inputs: Array(heldOut.prefix(2000)).map(\.input))
                results.append(.object([("predictor", .string(name))] + e.jsonFields
                                       + [("train_s", .double(seconds)), ("ns_per_prediction", .double(ns))]))
                note(String(format: "%@: MAE %.1f (baseline %.1f, ratio %.3f), bucket accuracy %.3f, underpredict %.3f, mean reserve %.1f, trained in %.1f s",
                           name, e.mae, e.baselineMAE, e.maeRatio, e.bucketAccuracy, e.underpredictRate, e.meanReserve, seconds))
            }
            do {
                var start = KVClock.monotonicNanos()
                let model = try TextLengthTrainer.train(training, options: lrOptions)
                try evaluate("logistic", TextLengthPredictor(model: model, onlineLearningRate: 0),
                             seconds: KVClock.seconds(from: start, to: KVClock.monotonicNanos()))
                start = KVClock.monotonicNanos()
                let stumps = try BoostedStumpsTrainer.train(training, options: stumpOptions) { round, mse in
                    note(String(format: "stumps round %d: training MSE (log space) %.4f", round, mse))
                }
                try evaluate("stumps", stumps, seconds: KVClock.seconds(from: start, to: KVClock.monotonicNanos()))
            } catch let error as LengthTrainingError {
                throw CLIError(error.description)
            }
            if json { try reportOutput.emit(command: "predict compare", fields: fields, runs: results) }
        }
    }
}
