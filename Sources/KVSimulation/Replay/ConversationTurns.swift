import KVCache
import KVData

/// The conversations of a timed replay's requests and each turn's history: what the modelled engine
/// reports retention figures against (`ConversationRunReport`) and what `ConversationRetention` serves.
///
/// - Conversations are `PensieveReplay.timeline`'s: the requests' sessions, or for a trace with hash
///   ids and no sessions (Mooncake) the hash chains (`HashChainConversations`), in arrival order.
/// - A turn's history is the full blocks its prompt keys (`TracePromptKeys`) share with the previous
///   turn of its conversation (arrival order, trace order on ties), at most up to the block before its
///   last prompt token (whose logits are always computed): the part of the conversation's context
///   that a cache of the previous prompt's blocks could supply. The keys do not cover a reply (the
///   next prompt repeats it under new keys), so a reply's KV is never history.
///
/// O(requests log requests + prompt blocks) to build; memory O(requests) plus one key list per
/// conversation while building.
public struct ConversationTurns: Sendable, Equatable {
    /// Each request's conversation, dense ids from 0.
    public let conversation: [Int32]
    /// Each request's history tokens (whole blocks).
    public let historyTokens: [Int]
    public let conversations: Int

    /// `requests` (arrivals as the engine will see them) in blocks of `blockTokens`.
    public init(_ requests: [TraceRequest], blockTokens: Int) {
        let timeline = PensieveReplay.timeline(requests, hasTimestamps: true, schedule: .init())
        conversation = timeline.conversation.map(Int32.init)
        conversations = timeline.conversations
        let order = requests.indices.sorted { a, b in
            requests[a].arrival != requests[b].arrival ? requests[a].arrival < requests[b].arrival : a < b
        }
        var previous: [Int: [BlockKey]] = [:]
        var history = [Int](repeating: 0, count: requests.count)
        for i in order {
            let r = requests[i], c = timeline.conversation[i]
            let keys = TracePromptKeys.keys(for: r, index: i, blockTokens: blockTokens)
            if let before = previous[c] {
                let limit = min(keys.count, before.count, max(0, (r.inputTokens - 1) / blockTokens))
                var k = 0
                while k < limit && keys[k] == before[k] { k += 1 }
                history[i] = k * blockTokens
            }
            previous[c] = keys
        }
        historyTokens = history
    }
}
