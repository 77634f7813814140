import ArgumentParser
import Foundation
import KVBench
import KVCache
import KVData
import KVPrediction
import KVScheduler

extension PredictCommand {
    /// The text model's training options, shared by `train` and `validate`.
    struct TrainingArguments: ParsableArguments {
        @Option(help: "Passes over the training data.")
        var epochs = 6
        @Option(name: .customLong("learning-rate"), help: "AdaGrad step size.")
        var learningRate: Float = 0.2
        @Option(help: "L2 penalty on the weights each example touches.")
        var l2: Float = 1e-6
        @Option(name: .customLong("hash-bits"), help: "log2 of the feature space size (8...24).")
        var hashBits = 18
        @OptionGroup var window: PromptWindowOptions
        @Option(help: "Quantile of the predicted distribution to reserve.")
        var quantile = 0.9
        @Option(help: "Statistic reported as the expected length: median, mean, or quantile (--expected-quantile).")
        var expected: String = "median"
        @Option(name: .customLong("expected-quantile"), help: "The quantile reported as expected with --expected quantile.")
        var expectedQuantile = 0.5
        @Flag(name: .customLong("no-model-crosses"), help: "Leave out (model x word) features.")
        var noModelCrosses = false
        @Flag(name: .customLong("no-bigrams"), help: "Leave out word bigrams.")
        var noBigrams = false
        @Option(name: .customLong("cross-scale"), help: "Value of a (model x word) feature relative to the word's own, in (0, 16].")
        var crossScale: Float = 1
        @Flag(name: .customLong("prompt-shape"), help: "Add the prompt-shape features (first word, question marks, lines, code symbols, requested counts).")
        var promptShape = false
        @Flag(name: .customLong("balance-sources"), help: "Weigh training examples so that every source data set counts the same.")
        var balanceSources = false
        @Flag(name: .customLong("hard-labels"), help: "Train on the target's bucket, not the samples' distribution.")
        var hardLabels = false

        /// Refuses every numeric flag outside its range (README, "Limits"), naming the flag.
        func validate() throws {
            func check(_ ok: Bool, _ message: String) throws { if !ok { throw ValidationError(message) } }
            let maxRate = TextLengthTrainer.maxLearningRate
            try check((1...TextLengthTrainer.maxEpochs).contains(epochs), "--epochs must be in 1...\(TextLengthTrainer.maxEpochs)")
            try check(learningRate.isFinite && learningRate > 0 && learningRate <= maxRate, "--learning-rate must be a finite number in (0, \(maxRate)]")
            try check(l2.isFinite && l2 >= 0 && l2 <= maxRate, "--l2 must be a finite number in [0, \(maxRate)]")
            try check((8...24).contains(hashBits), "--hash-bits must be in 8...24")
            try check(quantile > 0 && quantile < 1, "--quantile must be in (0, 1)")
            try check(expectedQuantile > 0 && expectedQuantile < 1, "--expected-quantile must be in (0, 1)")
            try check(crossScale > 0 && crossScale <= 16, "--cross-scale must be in (0, 16]")
        }

        func options() throws -> TextTrainingOptions {
            guard let statistic = ExpectedStatistic(rawValue: expected) else {
                throw CLIError("--expected must be median, mean or quantile")
            }
            var options = TextTrainingOptions()
            options.epochs = epochs
            options.learningRate = learningRate
            options.l2 = l2
            options.hashing.hashBits = hashBits
            window.apply(to: &options.hashing)
            options.hashing.modelCrosses = !noModelCrosses
            options.hashing.bigrams = !noBigrams
            options.hashing.modelCrossScale = crossScale
            options.hashing.promptShape = promptShape
            options.reserveQuantile = quantile
            options.expectedStatistic = statistic
            options.expectedQuantile = expectedQuantile
            options.softLabels = !hardLabels
            options.balanceSources = balanceSources
            do { try TextLengthTrainer.validate(options) } catch { throw CLIError(error.description) }
            return options
        }
    }
}
