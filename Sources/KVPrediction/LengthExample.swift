import KVData
import KVScheduler

/// One labelled request for training or evaluating an output-length predictor.
public struct LengthExample: Sendable {
    /// What the predictor sees.
    public var input: PredictionInput
    /// The length to predict, in tokens. For CASTILLO it is the mean of the sampled output lengths of
    /// this (prompt, model) pair; for ShareGPT the approximate token count of the reply.
    public var target: Double
    /// Individual observed output lengths when the data has several per input (CASTILLO: 10),
    /// otherwise the single rounded target.
    public var samples: [Int32]
    /// The unit of the train/eval split: a prompt id or a conversation id. Never split finer.
    public var group: String
    /// Whether the example belongs to the held-out (evaluation) part of the split.
    public var heldOut: Bool
    /// The source data set the prompt comes from (CASTILLO: `Alpaca`, `Mbpp`, ...), when known: the
    /// unit of leave-one-source-out validation.
    public var source: String?

    public init(input: PredictionInput, target: Double, samples: [Int32], group: String, heldOut: Bool,
                source: String? = nil) {
        self.input = input
        self.target = target
        self.samples = samples
        self.group = group
        self.heldOut = heldOut
        self.source = source
    }

    /// The `maxTokens` given to examples whose data has no limit: large enough never to clamp.
    public static let unboundedMaxTokens = 1 << 20
}
