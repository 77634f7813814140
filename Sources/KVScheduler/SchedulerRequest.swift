import KVCache

/// A request handed to the scheduler.
public struct SchedulerRequest: Sendable {
    /// The prompt: token ids (a server), or precomputed block keys and a length (trace replay).
    public enum Prompt: Sendable {
        case tokens([UInt32])
        case keys([BlockKey], tokenCount: Int)

        public var tokenCount: Int {
            switch self {
            case let .tokens(t): return t.count
            case let .keys(_, n): return n
            }
        }
    }

    public var id: SequenceID
    public var prompt: Prompt
    /// Most output tokens (`max_tokens`); nil takes the scheduler's default.
    public var maxTokens: Int?
    /// Arrival time in seconds on the caller's clock (for waiting times and aging).
    public var arrival: Double
    /// What the predictor sees besides the prompt length (text, template, model).
    public var promptText: String?
    public var templateKey: UInt64?
    public var modelID: String?
    /// The true output length, for the `oracle` policy only (evaluation).
    public var knownOutputTokens: Int?

    public init(id: SequenceID, prompt: Prompt, maxTokens: Int? = nil, arrival: Double,
                promptText: String? = nil, templateKey: UInt64? = nil, modelID: String? = nil,
                knownOutputTokens: Int? = nil) {
        self.id = id
        self.prompt = prompt
        self.maxTokens = maxTokens
        self.arrival = arrival
        self.promptText = promptText
        self.templateKey = templateKey
        self.modelID = modelID
        self.knownOutputTokens = knownOutputTokens
    }
}

/// Where a request is in its life.
public enum RequestState: UInt8, Sendable {
    /// Queued, never run.
    case waiting
    /// Holds KV blocks and is scheduled each step (prefilling or decoding).
    case running
    /// Was running, lost its KV (recompute) or moved it to host memory (swap); queued again.
    case preempted
    /// Done: its blocks are freed and its true length went to the predictor.
    case finished
}

/// Why a request finished.
public enum FinishReason: UInt8, Sendable {
    /// The engine reported a stop (end of sequence, stop string).
    case stop
    /// It reached `max_tokens`.
    case length
    /// It cannot fit in the KV cache even alone (prompt longer than the cache, or it grew to fill it).
    case capacity
}

/// A finished request's record, for the caller's metrics.
public struct FinishedRequest: Sendable {
    public var id: SequenceID
    public var reason: FinishReason
    public var arrival: Double
    /// When its first output token was sampled (nil when it finished before producing one).
    public var firstTokenTime: Double?
    public var finishTime: Double
    public var outputTokens: Int
    public var promptTokens: Int
    public var preemptions: Int
}

/// Errors from the scheduler's API. Invalid calls leave its state unchanged.
public enum SchedulerError: Error, Equatable {
    case duplicateRequest(SequenceID)
    case invalidRequest(String)
    /// `complete` was given a number of stop flags other than the plan's sampler count.
    case stopFlagsMismatch(expected: Int, got: Int)
    /// The cache refused a call the scheduler believed valid (a broken invariant, reported, not trapped).
    case cache(KVCacheError)
}
