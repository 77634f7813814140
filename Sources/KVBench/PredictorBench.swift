import KVCache
import KVPrediction
import KVScheduler

/// Measures the cost of one `predict` call, for `kvcache bench` and `kvcache predict eval`.
public enum PredictorBench {
    /// What `run` measured.
    public struct Result: Sendable {
        /// Nanoseconds per `TextLengthPredictor.predict` on the bench prompts.
        public var textNanoseconds: Double
        /// Nanoseconds per `HistoryLengthPredictor.predict` with warm template statistics.
        public var historyNanoseconds: Double
        /// Mean words per bench prompt.
        public var meanPromptWords: Double
    }

    /// Mean nanoseconds per `predict` over `inputs`, repeated `rounds` times, on the calling thread.
    /// Time is the thread's CPU time (`KVClock.threadCPUNanos`), so other processes on a shared
    /// machine inflate it less than wall time would.
    ///
    /// - Complexity: O(rounds x inputs.count) predictions.
    public static func nanosecondsPerPrediction(_ predictor: any OutputLengthPredictor, inputs: [PredictionInput],
                                                rounds: Int = 10) -> Double {
        guard !inputs.isEmpty, rounds > 0 else { return 0 }
        var sink = 0
        for input in inputs { sink &+= predictor.predict(input).reserve }   // warm-up
        let start = KVClock.threadCPUNanos()
        for _ in 0..<rounds {
            for input in inputs { sink &+= predictor.predict(input).reserve }
        }
        let elapsed = KVClock.threadCPUNanos() - start
        if sink == Int.min { print(sink) }   // keeps the calls from being optimised away
        return Double(elapsed) / Double(rounds * inputs.count)
    }

    /// A self-contained measurement: trains a text model (`hashing`; by default 2^18 slots, model crosses)
    /// on `promptCount` synthetic prompts of `promptWords` words on average and times predictions of
    /// them; times the history predictor on templated inputs.
    public static func run(promptCount: Int = 512, promptWords: Int = 60, rounds: Int = 20, seed: UInt64 = 7,
                           hashing: FeatureHashingConfig = FeatureHashingConfig()) -> Result {
        var rng = SplitMix64(seed: seed)
        let vocabulary = (0..<2000).map { "w\($0)" }
        var examples: [LengthExample] = []
        var words = 0
        for i in 0..<max(1, promptCount) {
            let n = max(1, promptWords / 2 + Int(rng.next() % UInt64(promptWords + 1)))
            words += n
            let text = (0..<n).map { _ in vocabulary[Int(rng.next() % UInt64(vocabulary.count))] }.joined(separator: " ")
            let input = PredictionInput(promptTokens: n * 4 / 3, promptText: text, modelID: "bench-model",
                                        maxTokens: 4096)
            examples.append(LengthExample(input: input, target: Double(16 + (i % 7) * 50), samples: [],
                                          group: "\(i)", heldOut: false))
        }
        var options = TextTrainingOptions()
        options.hashing = hashing
        options.epochs = 1
        let model = (try? TextLengthTrainer.train(examples, options: options))
            ?? TextLengthModel(hashing: options.hashing, buckets: options.buckets)
        let text = TextLengthPredictor(model: model)
        let textNs = nanosecondsPerPrediction(text, inputs: examples.map(\.input), rounds: rounds)

        let history = HistoryLengthPredictor()
        let templated = (0..<max(1, promptCount)).map {
            PredictionInput(promptTokens: 100 + $0 % 900, templateKey: UInt64($0 % 64), maxTokens: 4096)
        }
        for (i, input) in templated.enumerated() { history.observe(input, actualOutput: 20 + i % 300) }
        let historyNs = nanosecondsPerPrediction(history, inputs: templated, rounds: rounds)
        return Result(textNanoseconds: textNs, historyNanoseconds: historyNs,
                      meanPromptWords: Double(words) / Double(max(1, promptCount)))
    }
}
