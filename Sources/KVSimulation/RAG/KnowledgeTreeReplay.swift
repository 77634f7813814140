import KVCache
import KVData

/// Replays a RAGPulse trace through a `KnowledgeTree`, in file order, one request at a time.
///
/// A request's path is its system-prompt segments, then its passages in order (the trace's leading
/// segments of those kinds); history, web search, user input and template tokens are computed every
/// time. Hit tokens, saved prefill (modelled: the hit prefix's recompute time on the cost model less the
/// host loads) and the tree's counters are summed over the requests. O(requests x path length x log n).
public enum KnowledgeTreeReplay {
    public struct Result: Sendable, Equatable {
        public var requests = 0
        public var promptTokens = 0
        /// Tokens on the requests' paths (what any cache could reuse at most).
        public var pathTokens = 0
        public var gpuHitTokens = 0
        public var hostHitTokens = 0
        public var savedSeconds = 0.0
        public var counters = KnowledgeTree.Counters()
        public var hitTokens: Int { gpuHitTokens + hostHitTokens }
        public var hitRate: Double { promptTokens == 0 ? 0 : Double(hitTokens) / Double(promptTokens) }
    }

    /// Runs the requests `range` of `trace` (default: all) through a fresh tree of `config`, counting
    /// only those from `countFrom` on (the earlier ones warm the cache); checks the tree's invariants every
    /// `validateEvery` requests (0: never) and at the end. Throws the tree's errors, or `invalidArgument`
    /// for a range outside the trace.
    public static func run(_ trace: RAGPulse.Trace, config: KnowledgeTree.Config, range: Range<Int>? = nil,
                           countFrom: Int? = nil, validateEvery: Int = 0) throws(KnowledgeTreeError) -> Result {
        let all = trace.trace.requests.indices
        let range = range ?? all
        let countFrom = countFrom ?? range.lowerBound
        guard range.lowerBound >= all.lowerBound, range.upperBound <= all.upperBound,
              (range.lowerBound ... range.upperBound).contains(countFrom) else {
            throw .invalidArgument("requests \(range) counted from \(countFrom) are not within the trace's \(all.count)")
        }
        var tree = try KnowledgeTree(config)
        var result = Result()
        var steps: [KnowledgeTree.Step] = []
        for i in range {
            let counted = i >= countFrom
            steps.removeAll(keepingCapacity: true)
            for s in trace.segments(of: i) {
                guard s.kind == .sysPrompt || s.kind == .passages else { break }
                steps.append(.init(identity: s.identity, tokens: s.tokens))
                if counted { result.pathTokens += s.tokens }
            }
            let request = trace.trace.requests[i]
            if i == countFrom { tree.resetCounters() }
            let served = tree.serve(steps, promptTokens: request.inputTokens)
            if validateEvery > 0 && (i + 1) % validateEvery == 0 { try tree.validate() }
            guard counted else { continue }
            result.requests += 1
            result.promptTokens += request.inputTokens
            result.gpuHitTokens += served.gpuHitTokens
            result.hostHitTokens += served.hostHitTokens
            result.savedSeconds += served.savedSeconds
        }
        try tree.validate()
        result.counters = tree.counters
        return result
    }
}
