/// The work of one engine step, accumulated request by request so the cost model can price it.
///
/// Building one costs O(1) per scheduled request and allocates nothing; reuse one value per step
/// with `reset()`.
public struct StepWork: Sendable, Equatable {
    /// Prompt tokens computed this step (over all prefill chunks).
    public private(set) var prefillTokens: Int = 0
    /// Sum over prefill chunks of `chunk x (cachedBefore + chunk / 2)`: the query-key pairs causal
    /// attention visits, which makes the attention term quadratic in context.
    public private(set) var prefillAttentionPairs: Double = 0
    /// Context tokens whose KV prefill attention reads from the cache (the chunk's earlier context).
    public private(set) var prefillContextTokens: Int = 0
    /// Sequences that decode one token this step.
    public private(set) var decodeSequences: Int = 0
    /// Sum of the decoding sequences' context lengths (KV tokens read).
    public private(set) var decodeContextTokens: Int = 0
    /// Sequences touched this step (prefill or decode): each reads and writes its recurrent state.
    public private(set) var sequences: Int = 0
    /// Bytes moved over the host link (swap out plus swap in).
    public var hostTransferBytes: Double = 0

    public init() {}

    /// Forgets everything, keeping nothing allocated.
    public mutating func reset() { self = StepWork() }

    /// Adds a prefill chunk of `tokens` prompt tokens after `contextBefore` tokens already in the cache.
    public mutating func addPrefill(tokens: Int, contextBefore: Int) {
        prefillTokens += tokens
        prefillAttentionPairs += Double(tokens) * (Double(contextBefore) + Double(tokens + 1) / 2)
        prefillContextTokens += contextBefore
        sequences += 1
    }

    /// Adds one decoding sequence whose context (KV read by attention) is `context` tokens.
    public mutating func addDecode(context: Int) {
        decodeSequences += 1
        decodeContextTokens += context
        sequences += 1
    }

    /// Tokens that flow through the weights this step.
    public var batchedTokens: Int { prefillTokens + decodeSequences }

    /// True when the step computes nothing.
    public var isEmpty: Bool { batchedTokens == 0 && hostTransferBytes == 0 }
}

extension StepWork {
    /// The next step of a decode-only batch: every decoding sequence's context grew by one token.
    public mutating func advanceDecodes() {
        decodeContextTokens += decodeSequences
    }
}
