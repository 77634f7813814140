import KVCache
import KVData

/// Replays a RAGPulse trace through a `ChunkPrefixCache` (prefix tree and chunk store sharing one pool), in
/// file order, with modelled prefill times and time to first token.
///
/// A request's path is its segments in the trace's prompt order; template tokens are computed every time.
/// Per request (all modelled on the caller's `RecomputeCost`, nothing measured): computed tokens = input -
/// prefix hits - chunk hits + recomputed; prefill seconds = `cost.seconds(tokens: computed, contextBefore:
/// input - computed)` (the computed tokens attend over the whole prompt); saved seconds = the full prefill's
/// less that. Time to first token: one prefill instance serving the requests in arrival order (decode runs
/// elsewhere, as in a disaggregated deployment): start = max(arrival, previous finish), TTFT = finish -
/// arrival. Where the timestamps go back (recordings concatenated in one file), the later requests are
/// shifted to continue from the latest arrival so far. O(requests x segments x log n).
public enum ChunkPrefixReplay {
    public struct Result: Sendable, Equatable {
        public var requests = 0
        public var inputTokens = 0
        public var prefixHitTokens = 0
        public var chunkHitTokens = 0
        /// Of the chunk hit tokens, those loaded from the host tier (`ChunkPrefixCache.Config.hostBlocks`).
        public var hostHitTokens = 0
        public var recomputedTokens = 0
        public var computedTokens = 0
        public var prefillSeconds = 0.0
        public var savedSeconds = 0.0
        public var evictedNodes = 0
        /// Modelled TTFT of each counted request, in request order.
        public var ttft: [Double] = []
        public var reusedTokens: Int { prefixHitTokens + chunkHitTokens }
        public var savedPrefillTokens: Int { prefixHitTokens + chunkHitTokens - recomputedTokens }
        public var meanTTFT: Double { ttft.isEmpty ? 0 : ttft.reduce(0, +) / Double(ttft.count) }
        /// The q-quantile of the TTFTs (nearest rank).
        public func ttftQuantile(_ q: Double) -> Double {
            guard !ttft.isEmpty else { return 0 }
            let sorted = ttft.sorted()
            return sorted[min(sorted.count - 1, max(0, Int((q * Double(sorted.count)).rounded(.up)) - 1))]
        }
    }

    /// Tokens of the distinct segments (by identity) of the whole trace: what an unbounded chunk store holds.
    public static func uniqueSegmentTokens(_ trace: RAGPulse.Trace) -> Int {
        var seen = Set<UInt64>()
        var total = 0
        for s in trace.segments where seen.insert(s.identity).inserted { total += s.tokens }
        return total
    }

    /// Runs the requests `range` of `trace` (default: all) through a fresh cache of `config`, counting only
    /// those from `countFrom` on (the earlier ones warm the cache; the queue starts empty at the first
    /// counted request); checks the invariants every `validateEvery` requests (0: never) and at the end.
    /// Throws the cache's errors, or `invalidArgument` for a range outside the trace.
    public static func run(_ trace: RAGPulse.Trace, config: ChunkPrefixCache.Config, range: Range<Int>? = nil, countFrom: Int? = nil,
                           validateEvery: Int = 0) throws(CacheModelError) -> Result {
        let (range, countFrom) = try KnowledgeTreeReplay.requests(of: trace, range: range, countFrom: countFrom)
        var cache = try ChunkPrefixCache(config)
        var result = Result()
        var steps: [KnowledgeTree.Step] = []
        var free = -Double.infinity, latest = -Double.infinity, shift = 0.0
        var evictedBefore = 0
        for i in range {
            steps.removeAll(keepingCapacity: true)
            for s in trace.segments(of: i) { steps.append(.init(identity: s.identity, tokens: s.tokens)) }
            if i == countFrom { evictedBefore = cache.evictedNodes }
            let served = cache.serve(steps)
            if validateEvery > 0 && (i + 1) % validateEvery == 0 { try cache.validate() }
            guard i >= countFrom else { continue }
            let request = trace.trace.requests[i]
            let input = max(request.inputTokens, served.prefixHitTokens + served.chunkHitTokens)
            let computed = input - served.prefixHitTokens - served.chunkHitTokens + served.recomputedTokens
            let prefill = config.cost.seconds(tokens: computed, contextBefore: input - computed)
            result.requests += 1
            result.inputTokens += request.inputTokens
            result.prefixHitTokens += served.prefixHitTokens
            result.chunkHitTokens += served.chunkHitTokens
            result.hostHitTokens += served.hostHitTokens
            result.recomputedTokens += served.recomputedTokens
            result.computedTokens += computed
            result.prefillSeconds += prefill
            result.savedSeconds += config.cost.prefixSeconds(tokens: input) - prefill
            if request.arrival + shift < latest { shift = latest - request.arrival }
            let arrival = request.arrival + shift
            latest = arrival
            let start = max(arrival, free)
            free = start + prefill
            result.ttft.append(free - arrival)
        }
        try cache.validate()
        result.evictedNodes = cache.evictedNodes - evictedBefore
        return result
    }
}
