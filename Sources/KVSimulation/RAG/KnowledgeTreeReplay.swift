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

    /// Runs `trace` through a fresh tree of `config`; checks the tree's invariants every `validateEvery`
    /// requests (0: never). Throws the tree's errors.
    public static func run(_ trace: RAGPulse.Trace, config: KnowledgeTree.Config,
                           validateEvery: Int = 0) throws(KnowledgeTreeError) -> Result {
        var tree = try KnowledgeTree(config)
        var result = Result()
        var steps: [KnowledgeTree.Step] = []
        for (i, request) in trace.trace.requests.enumerated() {
            steps.removeAll(keepingCapacity: true)
            for s in trace.segments(of: i) {
                guard s.kind == .sysPrompt || s.kind == .passages else { break }
                steps.append(.init(identity: s.identity, tokens: s.tokens))
                result.pathTokens += s.tokens
            }
            let served = tree.serve(steps, promptTokens: request.inputTokens)
            result.requests += 1
            result.promptTokens += request.inputTokens
            result.gpuHitTokens += served.gpuHitTokens
            result.hostHitTokens += served.hostHitTokens
            result.savedSeconds += served.savedSeconds
            if validateEvery > 0 && (i + 1) % validateEvery == 0 { try tree.validate() }
        }
        try tree.validate()
        result.counters = tree.counters
        return result
    }
}
