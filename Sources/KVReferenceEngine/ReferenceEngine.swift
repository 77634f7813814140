import KVCache
import KVPlan
import KVRuntime
import KVTiers

/// A CPU inference engine for a llama model whose KV lives in `KVCacheManager`'s paged blocks.
///
/// The manager decides which blocks hold a sequence's tokens (prefix hits, eviction, copy-on-write
/// after a fork); this engine computes exactly the tokens the manager reports as not computed, writes
/// their K/V into the `PagedKVPool` block the manager named, and performs the block copies it asks for.
/// A prefix hit therefore skips those tokens' computation entirely, and any output equals a cold run's.
///
/// Single-threaded, like the manager (the BLAS kernels use the cores inside one call). Invalid input
/// throws before anything changes; a sequence whose start fails is removed again.
public final class ReferenceEngine {
    public let model: LlamaModel
    public let tokenizer: BPETokenizer
    public let cache: KVCacheManager
    public let pool: PagedKVPool
    private var logitsBuffer: [Float]
    private let workspace = ForwardWorkspace()
    private var copies: [(src: BlockID, dst: BlockID)] = []
    /// Tokens appended by a `step` whose allocation failed, awaiting a retry.
    private var pendingTokens: [SequenceID: UInt32] = [:]
    private var nextID: Int64 = 1
    /// Prompts are computed in chunks of at most this many tokens, which bounds the attention scratch
    /// (O(chunk x context) instead of O(prompt²)) and skips most of the causally masked scores.
    public let prefillChunkTokens: Int
    /// Host and disk tiers below the pool (see `attachTiers`), or nil.
    public internal(set) var tiers: KVTierManager?
    /// Where the last `start`'s prompt blocks loaded from the tiers came from.
    public internal(set) var lastTierLoad = TierLoad()
    /// The tokens (prompt, then sampled) of each sequence a scheduler plans for (see `execute`).
    var planned: [SequenceID: [UInt32]] = [:]

    /// - Parameters:
    ///   - capacityBlocks: blocks in the KV pool (each `blockTokens` tokens of every layer's K and V).
    ///   - enablePrefixCaching: off makes every request a cold run.
    ///   - prefillChunkTokens: the most prompt tokens computed in one forward call.
    public init(model: LlamaModel, tokenizer: BPETokenizer, blockTokens: Int = 16, capacityBlocks: Int,
                enablePrefixCaching: Bool = true, prefillChunkTokens: Int = 256) throws(EngineError) {
        guard blockTokens >= 1, capacityBlocks >= 1, prefillChunkTokens >= 1 else {
            throw .cache("block size, capacity and prefill chunk must be positive")
        }
        self.prefillChunkTokens = prefillChunkTokens
        self.model = model
        self.tokenizer = tokenizer
        do {
            cache = try KVCacheManager(KVCacheConfig(blockTokens: blockTokens, capacityBlocks: capacityBlocks,
                                                     enablePrefixCaching: enablePrefixCaching))
        } catch {
            throw .cache("\(error)")
        }
        pool = PagedKVPool(config: model.config, blockTokens: blockTokens, capacityBlocks: capacityBlocks)
        logitsBuffer = [Float](repeating: 0, count: model.config.vocabSize)
    }

    /// The logits after the last `start` or `step` (the next-token distribution of that sequence).
    public var lastLogits: [Float] { logitsBuffer }

    /// A fresh sequence id, unique within this engine.
    public func makeSequenceID() -> SequenceID {
        defer { nextID += 1 }
        return SequenceID(nextID)
    }

    /// Registers `prompt` as sequence `id`, reuses its longest cached prefix and computes the rest;
    /// `lastLogits` then holds the next-token logits. O(uncached tokens x model).
    /// With tiers attached, the prompt blocks found in host memory or on disk after the pool's own prefix
    /// are loaded into the sequence's new blocks instead of being computed (`lastTierLoad`).
    /// - Returns: prompt tokens taken from the cache or the tiers (not computed).
    @discardableResult
    public func start(_ id: SequenceID, prompt: [UInt32], salt: String = "") throws(EngineError) -> Int {
        guard !prompt.isEmpty else { throw .emptyInput }
        for t in prompt where Int(t) >= model.config.vocabSize {
            throw .tokenOutOfRange(t, vocabulary: model.config.vocabSize)
        }
        guard prompt.count <= model.config.contextLength else {
            throw .contextOverflow(tokens: prompt.count, limit: model.config.contextLength)
        }
        do { try cache.addSequence(id, prompt: prompt, salt: salt) } catch { throw .cache("\(error)") }
        lastTierLoad = TierLoad()
        do throws(EngineError) {
            do { _ = try cache.lookup(id) } catch { throw EngineError.cache("\(error)") }
            // Pin the cached prefix first: what is still cached now is what need not be computed.
            try allocate(id, newTokens: 0)
            let cached = try computed(id)
            let planner = self.planner
            let tierPlan = try planner.map { (p) throws(EngineError) in try lookupTiers(p, id, prompt: prompt, deviceTokens: cached) }
            try allocate(id, newTokens: prompt.count - cached)
            var loaded = 0
            if let planner, let tierPlan { loaded = try loadFromTiers(planner, id, plan: tierPlan) }
            for segment in PrefillSegment.prompt(deviceTokens: cached, loadedTokens: loaded, promptTokens: prompt.count) {
                switch segment.source {
                case .deviceHit, .tierLoad:
                    continue   // in the pool already
                case .compute:
                    var done = segment.positions.lowerBound
                    while done < segment.positions.upperBound {
                        let end = min(segment.positions.upperBound, done + prefillChunkTokens)
                        try compute(id, tokens: Array(prompt[done ..< end]), startPosition: done, mode: .prefill)
                        done = end
                    }
                }
            }
            if let planner, let tierPlan { try noteStoredInTiers(planner, id, keys: tierPlan.keys) }
            return cached + lastTierLoad.tokens
        } catch {
            try? cache.free(id)
            throw error
        }
    }

    /// Appends `token` (sampled from `lastLogits`) to sequence `id` and computes it; `lastLogits` then
    /// holds the following distribution. O(context) attention + O(model) projections.
    ///
    /// If the pool cannot supply a block (`poolExhausted`), the token stays appended but uncomputed;
    /// calling `step` again with the same token (after other sequences were finished) computes it, or
    /// `finish` drops the sequence.
    public func step(_ id: SequenceID, token: UInt32) throws(EngineError) {
        guard Int(token) < model.config.vocabSize else {
            throw .tokenOutOfRange(token, vocabulary: model.config.vocabSize)
        }
        let position = try computed(id)
        let known: Int
        do { known = try cache.tokenCount(id) } catch { throw .cache("\(error)") }
        guard position + 1 <= model.config.contextLength else {
            throw .contextOverflow(tokens: position + 1, limit: model.config.contextLength)
        }
        if known == position {
            // A block is needed only when the token starts one; refuse early so nothing changes then.
            if position % pool.blockTokens == 0 && cache.freeBlockCount < 1 {
                throw .poolExhausted(needed: 1, available: 0)
            }
            do { try cache.append(id, tokens: [token]) } catch { throw .cache("\(error)") }
        } else if known != position + 1 || pendingTokens[id] != token {
            throw .cache("\(id) awaits the retry of token \(pendingTokens[id].map(String.init) ?? "?"), not \(token)")
        }
        do throws(EngineError) {
            try allocate(id, newTokens: 1)
        } catch {
            pendingTokens[id] = token
            throw error
        }
        pendingTokens[id] = nil
        try compute(id, tokens: [token], startPosition: position, mode: .decode)
    }

    /// Starts `child` sharing every computed block of `parent` (the partial last block is copied when
    /// either writes into it). O(blocks).
    public func fork(_ parent: SequenceID, into child: SequenceID) throws(EngineError) {
        do { try cache.fork(parent, into: child) } catch { throw .cache("\(error)") }
    }

    /// Releases sequence `id`; its full blocks stay cached for later prefix hits until evicted.
    public func finish(_ id: SequenceID) throws(EngineError) {
        do { try cache.free(id) } catch { throw .cache("\(error)") }
        pendingTokens[id] = nil
    }

    // MARK: Generation

    /// Why a generation ended. Every reason keeps the tokens generated until then.
    public enum StopReason: String, Sendable, Codable {
        /// `maxTokens` were generated.
        case length
        /// The end-of-sequence token was sampled (it is not among the tokens).
        case eos
        /// The KV pool could not supply a block for the next token, even after evicting.
        case poolFull = "pool-full"
        /// The next token would have passed the model's context length.
        case contextFull = "context-full"
    }

    /// What one generation produced and how long it took.
    public struct Generation: Sendable {
        public var promptTokens: Int
        /// Prompt tokens served from the prefix cache (not recomputed).
        public var cachedPromptTokens: Int
        public var tokens: [UInt32]
        public var text: String
        public var stopReason: StopReason
        /// Whether generation stopped at the end-of-sequence token.
        public var stoppedAtEOS: Bool { stopReason == .eos }
        /// Seconds computing the prompt (the uncached part).
        public var prefillSeconds: Double
        /// Seconds computing generated tokens, and how many were computed.
        public var decodeSeconds: Double
        public var decodeSteps: Int
        /// Next-token logits right after the prompt (for checking outputs against other runs).
        public var promptLogits: [Float]

        public var prefillTokensPerSecond: Double {
            prefillSeconds > 0 ? Double(promptTokens - cachedPromptTokens) / prefillSeconds : 0
        }
        public var decodeTokensPerSecond: Double { decodeSeconds > 0 ? Double(decodeSteps) / decodeSeconds : 0 }
    }

    /// Generates up to `maxTokens` tokens after `prompt` with `sampler`, stopping early at the
    /// end-of-sequence token when `stopAtEOS`, and when the pool or the context is full (`stopReason`;
    /// the tokens generated until then are kept). `onToken` sees each token as it is sampled, so a
    /// caller can stream the text. The sequence is finished afterwards (its blocks stay cached), so a
    /// later prompt extending this one hits the cache.
    /// - Throws: what `start` throws (nothing generated yet), or `.nonFiniteLogits`.
    public func generate(prompt: [UInt32], maxTokens: Int, sampler: Sampler = .greedy, stopAtEOS: Bool = true,
                         onToken: (UInt32) -> Void = { _ in }) throws(EngineError) -> Generation {
        let id = makeSequenceID()
        let clock = ContinuousClock()
        let t0 = clock.now
        let cached = try start(id, prompt: prompt)
        let prefill = clock.now - t0
        var result = Generation(promptTokens: prompt.count, cachedPromptTokens: cached, tokens: [], text: "",
                                stopReason: .length, prefillSeconds: prefill.seconds, decodeSeconds: 0,
                                decodeSteps: 0, promptLogits: logitsBuffer)
        defer { try? finish(id) }
        try decode(id, into: &result, maxTokens: maxTokens, sampler: sampler, stopAtEOS: stopAtEOS, onToken: onToken)
        return result
    }

    /// Parallel sampling: computes `prompt` once, forks one sequence per sampler (sharing the prompt's
    /// blocks) and generates each continuation. Each result equals a separate `generate` with the same
    /// sampler.
    public func generateForked(prompt: [UInt32], maxTokens: Int, samplers: [Sampler],
                               stopAtEOS: Bool = true) throws(EngineError) -> [Generation] {
        guard !samplers.isEmpty else { return [] }
        let parent = makeSequenceID()
        let clock = ContinuousClock()
        let t0 = clock.now
        let cached = try start(parent, prompt: prompt)
        let prefill = (clock.now - t0).seconds
        let promptLogits = logitsBuffer
        var ids = [parent]
        defer { for id in ids { try? finish(id) } }
        for _ in 1 ..< samplers.count {
            let child = makeSequenceID()
            try fork(parent, into: child)
            ids.append(child)
        }
        var results: [Generation] = []
        for (id, sampler) in zip(ids, samplers) {
            logitsBuffer = promptLogits
            var r = Generation(promptTokens: prompt.count, cachedPromptTokens: cached, tokens: [], text: "",
                               stopReason: .length, prefillSeconds: prefill, decodeSeconds: 0, decodeSteps: 0,
                               promptLogits: promptLogits)
            try decode(id, into: &r, maxTokens: maxTokens, sampler: sampler, stopAtEOS: stopAtEOS, onToken: { _ in })
            results.append(r)
        }
        return results
    }

    /// Samples from `lastLogits` and steps until `maxTokens` tokens, EOS, a full pool or a full
    /// context (`r.stopReason`). A sampled token is kept even when its own KV could not be computed
    /// (the pool or context filled): it was generated, only its successor cannot be.
    private func decode(_ id: SequenceID, into r: inout Generation, maxTokens: Int, sampler: Sampler,
                        stopAtEOS: Bool, onToken: (UInt32) -> Void) throws(EngineError) {
        var sampler = sampler
        let clock = ContinuousClock()
        let t0 = clock.now
        defer {
            r.decodeSeconds = (clock.now - t0).seconds
            r.text = tokenizer.decode(r.tokens)
        }
        for i in 0 ..< max(0, maxTokens) {
            // NaN weights make every logit NaN and argmax silently token 0: refuse instead. O(vocab),
            // small next to the forward pass that produced the logits.
            guard logitsBuffer.allSatisfy({ $0.isFinite }) else {
                throw .nonFiniteLogits(position: r.promptTokens + i)
            }
            let token = logitsBuffer.withUnsafeBufferPointer { sampler.sample($0) }
            if stopAtEOS && token == tokenizer.eosID { r.stopReason = .eos; break }
            r.tokens.append(token)
            onToken(token)
            if i == maxTokens - 1 { break }   // the last token's successor is not needed
            do {
                try step(id, token: token)
            } catch {
                switch error {
                case .poolExhausted: r.stopReason = .poolFull
                case .contextOverflow: r.stopReason = .contextFull
                default: throw error
                }
                break
            }
            r.decodeSteps += 1
        }
    }

    // MARK: Internals

    private func computed(_ id: SequenceID) throws(EngineError) -> Int {
        do { return try cache.computedTokens(id) } catch { throw .cache("\(error)") }
    }

    /// Asks the manager for slots and performs the block copies it requests.
    private func allocate(_ id: SequenceID, newTokens: Int) throws(EngineError) {
        let outcome: AllocationOutcome
        do { outcome = try cache.allocate(id, newTokens: newTokens) } catch { throw .cache("\(error)") }
        if case let .insufficientBlocks(needed, available) = outcome {
            throw .poolExhausted(needed: needed, available: available)
        }
        performCopies()
    }

    /// Performs the block copies the manager asks for (copy-on-write), after the eviction copies of
    /// blocks just evicted (they may still be copying down to the tiers: they are written only after that).
    func performCopies() {
        tiers?.waitForEvictionCopies()
        copies.removeAll(keepingCapacity: true)
        cache.drainCopies(into: &copies)
        for c in copies { pool.copyBlock(from: c.src, to: c.dst) }
    }

    /// Runs the model over `tokens` at `startPosition` through the sequence's current block table and,
    /// with `commit`, tells the manager they are computed.
    func compute(_ id: SequenceID, tokens: [UInt32], startPosition: Int, mode: ForwardMode,
                 commit: Bool = true) throws(EngineError) {
        let table: [BlockID]
        do { table = try cache.blockTable(id) } catch { throw .cache("\(error)") }
        try tokens.withUnsafeBufferPointer { (t) throws(EngineError) in
            try table.withUnsafeBufferPointer { (b) throws(EngineError) in
                try logitsBuffer.withUnsafeMutableBufferPointer { (out) throws(EngineError) in
                    try model.forward(tokens: t, startPosition: startPosition, blockTable: b, pool: pool, logits: out,
                                      workspace: workspace, mode: mode)
                }
            }
        }
        guard commit else { return }
        do { try cache.commit(id, computedTokens: tokens.count) } catch { throw .cache("\(error)") }
    }
}

extension Duration {
    /// The duration in seconds as a Double.
    var seconds: Double {
        let c = components
        return Double(c.seconds) + Double(c.attoseconds) * 1e-18
    }
}
