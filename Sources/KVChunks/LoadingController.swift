import KVCache

/// CacheBlend's loading controller: picks the recompute ratio and the tier to load a prompt's reused
/// chunks from, so that loading their KV hides under the selective recompute.
///
/// The engine loads layer l + 1 while it recomputes layer l, so a prefill with reuse takes about
/// `max(load, recompute) + min(load, recompute) / layers` (the first layer's load, or the last layer's
/// recompute, does not overlap). Two rules follow. Where loading is the slower half, recomputing more
/// tokens is free: the ratio rises from `minimumRatio` to where recompute takes as long as loading (at most
/// 1). And among the tiers that hold the chunks, given cheapest first, the first whose loading already
/// hides under recompute at `minimumRatio` is enough; when none does, the one with the shortest prefill.
/// Last, loading at all must pay: when even that tier's pipelined prefill takes longer than recomputing
/// every reused token, the decision is to recompute them instead (`load` false).
///
/// Inputs are the caller's: a `RecomputeCost` (modelled or fitted to measured prefills) and measured tier
/// bandwidths. Every time it returns is modelled from them, not measured. `decide` is O(tiers x log
/// tokens) and allocates nothing; invalid input throws `ChunkError.invalidArgument`.
public struct LoadingController: Sendable {
    /// A tier that holds the chunks, with its measured read bandwidth.
    public struct Tier: Sendable, Equatable {
        public var name: String
        /// Bytes per second read from this tier into the device (> 0, finite).
        public var bytesPerSecond: Double
        public init(name: String, bytesPerSecond: Double) { self.name = name; self.bytesPerSecond = bytesPerSecond }
    }

    /// The choice for one prompt.
    public struct Decision: Sendable, Equatable {
        /// Index of the chosen tier in the list `decide` was given.
        public var tier: Int
        /// Fraction of the reused tokens to recompute.
        public var ratio: Double
        /// Tokens recomputed at that ratio.
        public var recomputedTokens: Int
        /// Modelled seconds loading the reused KV from the tier, and recomputing the selected tokens.
        public var loadSeconds: Double
        public var recomputeSeconds: Double
        /// Modelled prefill seconds of the reused part with loading pipelined under recompute.
        public var pipelinedSeconds: Double
        /// Modelled seconds to recompute every reused token instead of loading any.
        public var recomputeAllSeconds: Double
        /// Whether loading pays: the pipelined prefill is no longer than recomputing everything.
        public var load: Bool { pipelinedSeconds <= recomputeAllSeconds }
        /// Whether loading hides under recompute (load <= recompute).
        public var loadHidden: Bool { loadSeconds <= recomputeSeconds }
    }

    public let cost: RecomputeCost
    public let layers: Int
    /// KV bytes of one token over all layers (K and V).
    public let kvBytesPerToken: Int
    /// The ratio below which quality is not acceptable (CacheBlend's default 0.15).
    public let minimumRatio: Double

    /// - Throws: `.invalidArgument` for a non-positive layer count or KV size, or a minimum ratio outside
    ///   0...1.
    public init(cost: RecomputeCost, layers: Int, kvBytesPerToken: Int, minimumRatio: Double = 0.15) throws(ChunkError) {
        guard layers >= 1, kvBytesPerToken >= 1 else { throw .invalidArgument("layers and KV bytes per token must be positive") }
        guard minimumRatio.isFinite, (0 ... 1).contains(minimumRatio) else { throw .invalidArgument("minimum ratio \(minimumRatio) outside 0...1") }
        self.cost = cost
        self.layers = layers
        self.kvBytesPerToken = kvBytesPerToken
        self.minimumRatio = minimumRatio
    }

    /// The tier and ratio for `reusedTokens` reused tokens in a prompt of `contextTokens` tokens, given the
    /// tiers that hold them, cheapest first.
    /// - Throws: `.invalidArgument` for no tier, a bandwidth that is not positive and finite, a negative
    ///   count, or fewer context tokens than reused ones.
    public func decide(reusedTokens: Int, contextTokens: Int, tiers: [Tier]) throws(ChunkError) -> Decision {
        guard !tiers.isEmpty else { throw .invalidArgument("no tier holds the chunks") }
        guard reusedTokens >= 0, contextTokens >= reusedTokens else {
            throw .invalidArgument("\(reusedTokens) reused tokens in a context of \(contextTokens)")
        }
        for t in tiers where !(t.bytesPerSecond.isFinite && t.bytesPerSecond > 0) {
            throw .invalidArgument("tier \(t.name): bandwidth must be positive and finite")
        }
        let floor = try RecomputeSelection.budget(ratio: minimumRatio, tokens: reusedTokens)
        var best: Decision? = nil
        for (i, tier) in tiers.enumerated() {
            let load = Double(reusedTokens) * Double(kvBytesPerToken) / tier.bytesPerSecond
            // The most tokens whose recompute still fits under the load (recompute grows with tokens).
            var lo = floor, hi = reusedTokens
            if recompute(lo, context: contextTokens) < load {
                while lo < hi {
                    let mid = (lo + hi + 1) / 2
                    if recompute(mid, context: contextTokens) <= load { lo = mid } else { hi = mid - 1 }
                }
            }
            let r = recompute(lo, context: contextTokens)
            let d = Decision(tier: i, ratio: reusedTokens == 0 ? minimumRatio : Double(lo) / Double(reusedTokens),
                             recomputedTokens: lo, loadSeconds: load, recomputeSeconds: r,
                             pipelinedSeconds: max(load, r) + min(load, r) / Double(layers),
                             recomputeAllSeconds: recompute(reusedTokens, context: contextTokens))
            if load <= recompute(floor, context: contextTokens) { return d }
            if best == nil || d.pipelinedSeconds < best!.pipelinedSeconds { best = d }
        }
        return best!
    }

    /// Modelled seconds to recompute `tokens` tokens that attend over a context of `context` tokens.
    private func recompute(_ tokens: Int, context: Int) -> Double {
        cost.seconds(tokens: tokens, contextBefore: context - tokens)
    }
}
