import KVData

/// Conversations of a trace that has prefix block hashes but no session ids (the Mooncake format),
/// derived from the hash chains.
///
/// - Requests are taken in the given order (arrival order). A request's complete blocks are its first
///   floor(inputTokens / hashBlockTokens) hash ids: a trailing partial block's hash changes once the
///   block fills, so it never recurs.
/// - Request r continues the conversation of the earlier request p whose complete blocks form the
///   longest chain (k >= 1 blocks) that r's hash ids start with, the latest such request on equal chains,
///   provided p is still its conversation's latest turn; r then reuses the first k x hashBlockTokens
///   tokens of that conversation's context (p's prompt and reply), and the rest of the context is stale.
///   Otherwise (no such p, or p was already followed by another turn: a fork, which starts afresh) r
///   starts a conversation, as does a request without hash ids.
///
/// A trie over the complete blocks, one dictionary probe per hash id: O(total hash ids) time and memory.
public enum HashChainConversations {
    public struct Links: Sendable, Equatable {
        /// Each request's conversation (dense ids in order of first turn), by request index.
        public var conversation: [Int]
        /// Tokens of its conversation's context each request's prompt starts with (0 for a first turn).
        public var reusableTokens: [Int]
        public var conversations: Int
    }

    private struct Edge: Hashable {
        var parent: Int32
        var hash: UInt64
    }

    /// Links `requests` visited in `order` (a permutation of their indices).
    public static func link(_ requests: [TraceRequest], order: [Int]) -> Links {
        precondition(order.count == requests.count, "order is a permutation of the requests")
        var links = Links(conversation: [Int](repeating: 0, count: requests.count),
                          reusableTokens: [Int](repeating: 0, count: requests.count), conversations: 0)
        var child: [Edge: Int32] = [:]
        // Per trie node (0: the root): the latest request whose complete blocks end there, -1 if none.
        var endsHere: [Int32] = [-1]
        var latestTurn: [Int] = []
        for r in order {
            let request = requests[r]
            var node: Int32 = 0, best = -1, bestBlocks = 0
            for (i, hash) in request.hashIDs.enumerated() {
                guard let next = child[Edge(parent: node, hash: hash)] else { break }
                node = next
                if endsHere[Int(node)] >= 0 { best = Int(endsHere[Int(node)]); bestBlocks = i + 1 }
            }
            if best >= 0, latestTurn[links.conversation[best]] == best {
                links.conversation[r] = links.conversation[best]
                links.reusableTokens[r] = bestBlocks * request.hashBlockTokens
            } else {
                links.conversation[r] = links.conversations
                links.conversations += 1
                latestTurn.append(r)
            }
            latestTurn[links.conversation[r]] = r
            let complete = request.hashBlockTokens > 0 ? min(request.hashIDs.count, request.inputTokens / request.hashBlockTokens) : 0
            guard complete > 0 else { continue }
            node = 0
            for hash in request.hashIDs[..<complete] {
                let edge = Edge(parent: node, hash: hash)
                if let next = child[edge] {
                    node = next
                } else {
                    node = Int32(endsHere.count)
                    child[edge] = node
                    endsHere.append(-1)
                }
            }
            endsHere[Int(node)] = Int32(r)
        }
        return links
    }
}
