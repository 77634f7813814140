import KVData

/// Prefix reuse against chunk reuse on a RAG trace whose prompts are segments (RAGPulse), with an
/// unbounded cache. The semantics are exact so that others can check them (tools/reference/
/// ragpulse_replay.py computes the same figures independently):
///
/// - requests in file order;
/// - prefix hits: the lengths of the longest run of leading segments equal (kind, id, order) to the
///   leading segments of an earlier request (a trie of every earlier request's segment sequence);
/// - chunk hits: the lengths of every later segment whose (kind, id) appeared in any earlier request
///   (segments of the same request do not count: its KV is not cached yet);
/// - recomputed: for each chunk-hit segment, ceil(ratio x length) tokens (CacheBlend's selective
///   recompute), and saved prefill tokens = prefix + chunk hits - recomputed;
/// - template tokens (input length minus the segments) are never reused.
///
/// O(segments) expected per request (one hash probe per segment); memory grows with the distinct
/// segment sequences and ids, since nothing is evicted. A finite capacity (chunk store and prefix tree
/// sharing blocks under LRU or PGDSF) is not modelled here yet.
public struct ChunkReuseReplay: Sendable {
    public struct Result: Sendable, Equatable {
        public var requests = 0
        public var inputTokens = 0
        public var segmentTokens = 0
        public var prefixHitTokens = 0
        public var chunkHitTokens = 0
        public var recomputedTokens = 0
        /// Prefix hits over input tokens.
        public var prefixHitRate: Double { inputTokens == 0 ? 0 : Double(prefixHitTokens) / Double(inputTokens) }
        /// Prefix and chunk hits over input tokens.
        public var chunkReuseHitRate: Double {
            inputTokens == 0 ? 0 : Double(prefixHitTokens + chunkHitTokens) / Double(inputTokens)
        }
        /// Tokens whose prefill chunk reuse saves, net of the recomputed ones.
        public var savedPrefillTokens: Int { prefixHitTokens + chunkHitTokens - recomputedTokens }
    }

    /// Trie edges: (node, segment identity) -> child node; node 0 is the root.
    private struct Edge: Hashable { var node: Int32; var segment: UInt64 }
    private var children: [Edge: Int32] = [:]
    private var nodes: Int32 = 1
    private var seen: Set<UInt64> = []
    public let recomputeRatio: Double
    public private(set) var result = Result()

    /// - Parameter recomputeRatio: the fraction of a reused chunk's tokens recomputed, in 0...1.
    public init(recomputeRatio: Double = 0.15) {
        precondition((0 ... 1).contains(recomputeRatio), "recompute ratio must be in 0...1")
        self.recomputeRatio = recomputeRatio
    }

    /// Replays one request of `inputTokens` tokens whose prompt starts with `segments`.
    public mutating func replay(inputTokens: Int, segments: ArraySlice<RAGPulse.Segment>) {
        result.requests += 1
        result.inputTokens += inputTokens
        var node: Int32 = 0
        var k = segments.startIndex
        while k < segments.endIndex, let child = children[Edge(node: node, segment: segments[k].identity)] {
            result.prefixHitTokens += segments[k].tokens
            node = child
            k += 1
        }
        for s in segments[k...] where seen.contains(s.identity) {
            result.chunkHitTokens += s.tokens
            result.recomputedTokens += Int((recomputeRatio * Double(s.tokens)).rounded(.up))
        }
        node = 0
        for s in segments {
            result.segmentTokens += s.tokens
            let edge = Edge(node: node, segment: s.identity)
            if let child = children[edge] {
                node = child
            } else {
                children[edge] = nodes
                node = nodes
                nodes += 1
            }
            seen.insert(s.identity)
        }
    }

    /// Replays every request of `trace` in file order and returns the totals.
    public static func run(_ trace: RAGPulse.Trace, recomputeRatio: Double = 0.15) -> Result {
        var replay = ChunkReuseReplay(recomputeRatio: recomputeRatio)
        for (i, r) in trace.trace.requests.enumerated() {
            replay.replay(inputTokens: r.inputTokens, segments: trace.segments(of: i))
        }
        return replay.result
    }
}
