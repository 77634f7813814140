import KVCache
import KVData

/// Replays a RAGPulse trace through a `KnowledgeTree`, in file order, one request at a time.
///
/// A request's path is its system-prompt segments, then its passages in order (`Layout.systemFirst`, the
/// trace's own order), or its passages, then its system-prompt segments (`Layout.passagesFirst`: a what-if
/// prompt layout that puts the documents at the front); history, web search, user input and template
/// tokens are computed every time. Hit tokens, saved prefill (modelled: the hit prefix's recompute time on the cost model less the
/// host loads) and the tree's counters are summed over the requests. O(requests x path length x log n).
public enum KnowledgeTreeReplay {
    /// The order of a request's cacheable segments.
    public enum Layout: String, Sendable, CaseIterable {
        case systemFirst = "system-first", passagesFirst = "passages-first"
    }

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

    /// `range` (default: every request) and `countFrom` (default: its start) checked against `trace`: the
    /// replayed requests and the first counted one. Throws `invalidArgument` for a range outside the trace
    /// or a first counted request outside the range. O(1).
    static func requests(of trace: RAGPulse.Trace, range: Range<Int>?, countFrom: Int?) throws(CacheModelError) -> (Range<Int>, Int) {
        let all = trace.trace.requests.indices
        let range = range ?? all
        let countFrom = countFrom ?? range.lowerBound
        guard range.lowerBound >= all.lowerBound, range.upperBound <= all.upperBound,
              (range.lowerBound ... range.upperBound).contains(countFrom) else {
            throw .invalidArgument("requests \(range) counted from \(countFrom) are not within the trace's \(all.count)")
        }
        return (range, countFrom)
    }

    /// Runs the requests `range` of `trace` (default: all) through a fresh tree of `config`, counting
    /// only those from `countFrom` on (the earlier ones warm the cache); checks the tree's invariants every
    /// `validateEvery` requests (0: never) and at the end. Throws the tree's errors, or `invalidArgument`
    /// for a range outside the trace.
    public static func run(_ trace: RAGPulse.Trace, config: KnowledgeTree.Config, layout: Layout = .systemFirst, range: Range<Int>? = nil,
                           countFrom: Int? = nil, validateEvery: Int = 0) throws(CacheModelError) -> Result {
        let (range, countFrom) = try KnowledgeTreeReplay.requests(of: trace, range: range, countFrom: countFrom)
        var tree = try KnowledgeTree(config)
        var result = Result()
        var steps: [KnowledgeTree.Step] = []
        let order: [RAGPulse.Kind] = layout == .systemFirst ? [.sysPrompt, .passages] : [.passages, .sysPrompt]
        for i in range {
            let counted = i >= countFrom
            steps.removeAll(keepingCapacity: true)
            let segments = trace.segments(of: i)
            for kind in order {
                for s in segments where s.kind == kind {
                    steps.append(.init(identity: s.identity, tokens: s.tokens))
                    if counted { result.pathTokens += s.tokens }
                }
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
