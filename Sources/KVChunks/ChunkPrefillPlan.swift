import KVCache

/// One piece of a prompt as the caller splits it: fresh text, the cached prefix (first piece only), or a
/// reusable chunk with its key.
public struct PromptPiece: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// Computed in full (the question, template text, anything not worth caching).
        case fresh
        /// Served by the prefix cache (`KVCacheManager`): leading tokens only.
        case cachedPrefix
        /// A chunk that may be in the chunk store.
        case chunk(ChunkKey)
    }
    public var kind: Kind
    public var tokens: Int
    public init(_ kind: Kind, tokens: Int) { self.kind = kind; self.tokens = tokens }
}

/// Which tokens of a reused chunk are recomputed to repair its cross-attention to what precedes it.
public enum TokenSelection: Sendable, Equatable {
    /// None (full reuse).
    case none
    /// CacheBlend's high-KV-deviation tokens: the engine recomputes every token at its check layer and keeps
    /// the ceil(ratio x n) with the largest deviation, so the plan carries only the budget (an engine may
    /// spend the spans' budgets together over the prompt, as `ChunkBlender` does).
    case highDeviation(ratio: Double)
    /// ceil(ratio x n) positions drawn uniformly without replacement (the ablation), from `seed`.
    case random(ratio: Double, seed: UInt64)
    /// The first ceil(ratio x n) positions of each chunk.
    case leading(ratio: Double)
    /// Cache-Craft: ceil(ratio x reused tokens) over the whole prompt, split over the chunks in proportion
    /// to each variant's `contextImpact` times its tokens (`RecomputeSelection.contextImpactBudgets`), and
    /// within a chunk the tokens of highest recorded `tokenImpact` (its leading tokens when none was
    /// recorded).
    case contextImpact(ratio: Double)

    var ratio: Double {
        switch self {
        case .none: 0
        case let .highDeviation(r), let .random(r, _), let .leading(r), let .contextImpact(r): r
        }
    }
}

/// Where a reused span's KV came from: the store's device pool, or loaded into it from host memory or disk
/// for this prompt (`TieredChunkStore.plan`).
public enum ChunkTier: String, Sendable, Equatable { case device, host, disk }

/// A chunk's cached KV placed at new prompt positions.
public struct ReusedSpan: Sendable, Equatable {
    public var chunk: ChunkKey
    public var variant: ChunkVariantID
    public var tier: ChunkTier
    /// Positions the KV was computed at.
    public var source: Range<Int>
    /// Prompt positions it now occupies.
    public var target: Range<Int>
    /// Tokens of the span the engine recomputes (the positions are in `ChunkPrefillPlan.recompute` unless
    /// the selection is `.highDeviation`, where the engine chooses them).
    public var recomputeBudget: Int
    /// Whether the KV is exactly what a full prefill computes here: the chunk was computed at its target
    /// position right after the prompt's cached prefix, under the plan's context (a prefix hit in all but
    /// name). Its budget is 0 under every selection.
    public var exact: Bool
    /// The RoPE shift that moves the keys from `source` to `target`: `RopeRotator.rotate(by:)`.
    public var rotateBy: Int { target.lowerBound - source.lowerBound }
}

/// The engine-neutral prefill of a prompt with chunk reuse: the cached prefix, the reused chunk spans (key,
/// variant, tier, source and target positions), the prompt positions to recompute inside them, and the
/// fresh ranges computed in full (fresh pieces and chunks the store does not hold). The engine executes
/// it: copies or maps each span's blocks, re-rotates keys by `rotateBy`, recomputes the selected tokens,
/// computes the fresh ranges, then calls `release` so the variants may be evicted again.
///
/// Building is O(pieces + recomputed positions) plus one store lookup per chunk; it allocates the plan's
/// arrays. Cache-Craft's per-chunk decision (reuse as is / partial fix / full recompute) is `.contextImpact`'s
/// budget split; the reference engine executes plans (`ChunkBlender`); `TieredChunkStore.plan` plans with
/// chunks loaded from host or disk (their budgets raised to the loading controller's ratio).
public struct ChunkPrefillPlan: Sendable, Equatable {
    /// How the recomputed tokens were (or, for `.highDeviation`, are to be) chosen.
    public var selection: TokenSelection
    public var promptTokens: Int
    /// Positions served by the prefix cache.
    public var prefix: Range<Int>
    public var reused: [ReusedSpan]
    /// Prompt positions recomputed inside reused spans, ascending.
    public var recompute: [Int]
    /// Ranges computed in full, ascending.
    public var fresh: [Range<Int>]
    /// Chunks the store did not hold (recomputed as fresh).
    public var missingChunks: Int
    /// An empty plan (no prompt), to `draft` into.
    public init() {
        self.init(selection: .none, promptTokens: 0, prefix: 0 ..< 0, reused: [], recompute: [], fresh: [], missingChunks: 0)
    }

    public init(selection: TokenSelection, promptTokens: Int, prefix: Range<Int>, reused: [ReusedSpan], recompute: [Int],
                fresh: [Range<Int>], missingChunks: Int) {
        self.selection = selection; self.promptTokens = promptTokens; self.prefix = prefix; self.reused = reused
        self.recompute = recompute; self.fresh = fresh; self.missingChunks = missingChunks
    }

    /// Plans `pieces` against `store`, acquiring every reused variant (see `release`). `context` is the key
    /// of what precedes the prompt's chunks (prefers variants computed after it). `minimumRatios`: per
    /// chunk, a ratio its span's budget is computed at when above the selection's (`draft`). `draft` then
    /// `acquire`.
    /// - Throws: `.invalidArgument` for a non-positive piece, a cached prefix that is not first, a ratio
    ///   outside 0...1, or a stored variant whose length differs from the piece's; nothing is acquired then.
    public static func build(_ pieces: [PromptPiece], store: inout ChunkStore, context: BlockKey,
                             selection: TokenSelection = .none,
                             minimumRatios: [ChunkKey: Double] = [:]) throws(ChunkError) -> ChunkPrefillPlan {
        var plan = ChunkPrefillPlan()
        try plan.draft(pieces, store: store, context: context, selection: selection, minimumRatios: minimumRatios)
        plan.acquire(in: &store)
        return plan
    }

    /// Replaces this plan with the plan of `pieces` against `store` as it is now, changing nothing in the
    /// store (no variant is marked used or held: `acquire` does that). Reuses this plan's array capacity,
    /// so redrafting one plan allocates nothing for `.none`, `.highDeviation` and `.leading` once its
    /// arrays have grown (`.random` and `.contextImpact` allocate scratch). O(pieces + recomputed
    /// positions) plus one `ChunkStore.find` per chunk.
    ///
    /// `minimumRatios` raises the recompute ratio of the chunks it names: a span of such a chunk gets the
    /// budget of max(selection's ratio, its entry) under every selection but `.none` (full reuse recomputes
    /// nothing), and an exact span still 0. `.leading` and `.random` pick that many positions in it;
    /// `.contextImpact` gives it at least that many (the split over the prompt is the selection's ratio's).
    /// `TieredChunkStore.plan` passes the loading controller's ratio of each chunk it loads. Empty (the
    /// default): one ratio for every span, and no hash probe per chunk.
    /// - Throws: as `build` (also for an entry of `minimumRatios` outside 0...1); the plan is unchanged then.
    public mutating func draft(_ pieces: [PromptPiece], store: ChunkStore, context: BlockKey,
                               selection: TokenSelection = .none, minimumRatios: [ChunkKey: Double] = [:]) throws(ChunkError) {
        guard selection.ratio.isFinite, (0 ... 1).contains(selection.ratio) else { throw .invalidArgument("recompute ratio outside 0...1") }
        for (_, r) in minimumRatios where !(r.isFinite && (0 ... 1).contains(r)) {
            throw .invalidArgument("minimum recompute ratio \(r) outside 0...1")
        }
        for (i, piece) in pieces.enumerated() {
            guard piece.tokens >= 1 else { throw .invalidArgument("piece \(i) has no tokens") }
            if piece.kind == .cachedPrefix && i != 0 { throw .invalidArgument("a cached prefix must be the first piece") }
            if case let .chunk(key) = piece.kind, let id = store.find(key, context: context) {
                let stored = store.variant(id)!.tokens
                guard stored == piece.tokens else { throw .invalidArgument("piece \(i): stored chunk has \(stored) tokens, not \(piece.tokens)") }
            }
        }
        self.selection = selection
        prefix = 0 ..< 0
        reused.removeAll(keepingCapacity: true)
        recompute.removeAll(keepingCapacity: true)
        fresh.removeAll(keepingCapacity: true)
        missingChunks = 0
        var rng = SplitMix64(seed: { if case let .random(_, seed) = selection { seed } else { 0 } }())
        var position = 0
        for piece in pieces {
            let range = position ..< position + piece.tokens
            position += piece.tokens
            switch piece.kind {
            case .cachedPrefix: prefix = range
            case .fresh: appendFresh(range)
            case let .chunk(key):
                guard let id = store.find(key, context: context) else {
                    missingChunks += 1
                    appendFresh(range)
                    continue
                }
                let v = store.variant(id)!
                // Computed at this very position after this very context: its KV is what a full prefill
                // computes, so nothing in it needs repair.
                let exact = range.lowerBound == prefix.upperBound && v.computedAt == range.lowerBound && v.context == context
                let budget = exact ? 0 : try! RecomputeSelection.budget(ratio: ratio(of: key, selection, minimumRatios), tokens: piece.tokens)  // ratios checked above
                reused.append(ReusedSpan(chunk: key, variant: id, tier: .device,
                                         source: v.computedAt ..< v.computedAt + v.tokens, target: range,
                                         recomputeBudget: budget, exact: exact))
                switch selection {
                case .none, .highDeviation, .contextImpact: break
                case .leading: recompute.append(contentsOf: range.prefix(budget))
                case .random:
                    for p in RecomputeSelection.random(count: piece.tokens, budget: budget, rng: &rng) { recompute.append(range.lowerBound + p) }
                }
            }
        }
        promptTokens = position
        if case let .contextImpact(ratio) = selection { selectByContextImpact(ratio: ratio, store: store, minimumRatios: minimumRatios) }
    }

    /// The ratio a span of `key` is budgeted at: the selection's, raised to `minimumRatios[key]` (not for
    /// `.none`). O(1); no probe when `minimumRatios` is empty.
    private func ratio(of key: ChunkKey, _ selection: TokenSelection, _ minimumRatios: [ChunkKey: Double]) -> Double {
        guard !minimumRatios.isEmpty, selection != .none, let floor = minimumRatios[key] else { return selection.ratio }
        return max(selection.ratio, floor)
    }

    /// Holds every reused variant in `store` and marks it used, as the store was when the plan was
    /// drafted (see `release`). O(reused spans), no allocation.
    /// - Precondition: the store has not changed since `draft` (every span's variant is live).
    public func acquire(in store: inout ChunkStore) {
        for span in reused {
            store.touch(span.variant)
            try! store.acquire(span.variant)  // live: precondition
        }
    }

    /// Sets each span's budget and recomputed positions for `.contextImpact`. The store's variants are live
    /// (acquired by `build`), so nothing here can fail.
    private mutating func selectByContextImpact(ratio: Double, store: ChunkStore, minimumRatios: [ChunkKey: Double]) {
        let tokens = reused.map { $0.exact ? 0 : $0.target.count }
        let total = try! RecomputeSelection.budget(ratio: ratio, tokens: tokens.reduce(0, +))
        let impacts = reused.map { store.variant($0.variant)!.contextImpact ?? 0 }
        let budgets = try! RecomputeSelection.contextImpactBudgets(total, impacts: impacts, tokens: tokens)
        for i in reused.indices {
            // At least the budget of the chunk's minimum ratio (ratios checked by `draft`).
            let floor = minimumRatios.isEmpty || tokens[i] == 0 ? 0
                : minimumRatios[reused[i].chunk].map { try! RecomputeSelection.budget(ratio: $0, tokens: tokens[i]) } ?? 0
            reused[i].recomputeBudget = max(budgets[i], floor)
            let chosen = (try! store.tokenImpact(of: reused[i].variant)).map { RecomputeSelection.topScores($0, budget: reused[i].recomputeBudget) }
                ?? Array(0 ..< reused[i].recomputeBudget)
            recompute.append(contentsOf: chosen.map { reused[i].target.lowerBound + $0 })
        }
    }

    private mutating func appendFresh(_ r: Range<Int>) {
        if let last = fresh.last, last.upperBound == r.lowerBound { fresh[fresh.count - 1] = last.lowerBound ..< r.upperBound } else { fresh.append(r) }
    }

    /// Ends the plan's hold on its variants (after the engine has read them).
    public func release(from store: inout ChunkStore) throws(ChunkError) {
        for span in reused { try store.release(span.variant) }
    }

    /// Checks that prefix, reused spans and fresh ranges tile `0 ..< promptTokens` exactly once, each span's
    /// source is as long as its target, and every recomputed position lies in a reused span within its
    /// budget, ascending and distinct. O(promptTokens).
    public func validate() throws(InvariantViolation) {
        var covered = Array(repeating: 0, count: promptTokens)
        func cover(_ r: Range<Int>) throws(InvariantViolation) {
            guard r.lowerBound >= 0, r.upperBound <= promptTokens else { throw InvariantViolation("range \(r) outside the prompt") }
            for p in r { covered[p] += 1 }
        }
        try cover(prefix)
        guard prefix.isEmpty || prefix.lowerBound == 0 else { throw InvariantViolation("prefix does not start the prompt") }
        for s in reused {
            guard s.source.count == s.target.count, s.source.lowerBound >= 0 else { throw InvariantViolation("span \(s.target) source \(s.source)") }
            try cover(s.target)
        }
        for f in fresh { try cover(f) }
        guard covered.allSatisfy({ $0 == 1 }) else { throw InvariantViolation("the plan does not tile the prompt exactly once") }
        guard zip(recompute, recompute.dropFirst()).allSatisfy({ $0 < $1 }) else { throw InvariantViolation("recompute not ascending") }
        for s in reused {
            let inside = recompute.filter { s.target.contains($0) }.count
            guard inside <= s.recomputeBudget, s.recomputeBudget <= s.target.count else {
                throw InvariantViolation("span \(s.target): \(inside) recomputed, budget \(s.recomputeBudget)")
            }
        }
        guard recompute.allSatisfy({ p in reused.contains { $0.target.contains(p) } }) else {
            throw InvariantViolation("a recomputed position lies outside every reused span")
        }
    }
}
