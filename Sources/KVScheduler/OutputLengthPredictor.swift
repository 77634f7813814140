/// What a predictor may look at when it guesses how many tokens a request will generate.
///
/// Every field except `promptTokens` and `maxTokens` is optional: traces without text (Azure,
/// Mooncake) give only lengths and perhaps a template key (for example the first prefix block, which
/// is usually the system prompt).
public struct PredictionInput: Sendable {
    /// Prompt length in tokens.
    public var promptTokens: Int
    /// The prompt text, when known.
    public var promptText: String?
    /// A key shared by requests built from the same template (system prompt, task), when known.
    public var templateKey: UInt64?
    /// The model or task that will serve the request, when known.
    public var modelID: String?
    /// The request's `max_tokens`: no prediction may exceed it.
    public var maxTokens: Int

    public init(promptTokens: Int, promptText: String? = nil, templateKey: UInt64? = nil,
                modelID: String? = nil, maxTokens: Int) {
        self.promptTokens = promptTokens
        self.promptText = promptText
        self.templateKey = templateKey
        self.modelID = modelID
        self.maxTokens = maxTokens
    }
}

/// A predicted output length.
public struct LengthPrediction: Sendable, Equatable {
    /// The expected number of output tokens (used for ordering, e.g. shortest-predicted-first).
    public var expected: Int
    /// The number of output tokens to reserve KV for: a high quantile of the predicted distribution,
    /// so that few requests outgrow their reservation.
    public var reserve: Int
    /// The predicted length bucket (predictor specific; 0 when the predictor has no buckets).
    public var bucket: Int

    public init(expected: Int, reserve: Int, bucket: Int) {
        self.expected = expected
        self.reserve = reserve
        self.bucket = bucket
    }
}

/// Predicts how many tokens a request will generate, and learns from the true lengths.
///
/// The scheduler calls `predict` once when a request arrives and `observe` when it finishes with its
/// true output length. Implementations are single-threaded (called from the scheduler thread).
public protocol OutputLengthPredictor: AnyObject {
    /// The predicted output length of `input`.
    func predict(_ input: PredictionInput) -> LengthPrediction
    /// Feeds back the true output length of a finished request.
    func observe(_ input: PredictionInput, actualOutput: Int)
}
