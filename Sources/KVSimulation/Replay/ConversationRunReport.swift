import KVData

/// What a modelled run did with its conversations' history (`ModelledRunConfig.reportsConversations`),
/// the same figures whether the device pool's prefix cache (with its host tier) or a
/// `ConversationRetention` supplied it.
///
/// Per turn (a request at its first admission) with `ConversationTurns`' history h: the GPU hit is what
/// the device supplied of h (a prefix cache's device hit, or the retention's GPU chunks), the host hit
/// what host memory supplied of the rest of h, and the recomputed tokens the rest of h. Hits beyond
/// h (a prefix shared with another conversation) are not history and are left out. O(1) per turn.
public struct ConversationRunReport: Sendable, Equatable {
    /// "prefix-cache" or the retention's policy.
    public var retention: String
    public var conversations = 0
    /// Requests admitted at least once.
    public var turns = 0
    public var historyTokens = 0
    public var gpuHitTokens = 0
    public var hostHitTokens = 0
    public var recomputedTokens = 0
    /// Retention only: blocks moved to the host to make room, ahead of time, and dropped.
    public var swappedBlocks = 0
    public var aheadOfTimeBlocks = 0
    public var droppedBlocks = 0
    /// Bytes copied over the host link (modelled): loads from host memory and copies down to it (the
    /// host tier's write-backs, or the retention's moves).
    public var hostLinkBytes = 0.0

    public init(retention: String, conversations: Int) {
        self.retention = retention
        self.conversations = conversations
    }

    /// Adds a turn of `history` tokens to which the device supplied `gpu` tokens and host memory `host`
    /// (after the device's).
    public mutating func addTurn(history: Int, gpu: Int, host: Int) {
        let g = min(gpu, history), h = min(host, history - g)
        turns += 1
        historyTokens += history
        gpuHitTokens += g
        hostHitTokens += h
        recomputedTokens += history - g - h
    }

    /// Host hits over history tokens (0 without history).
    public var hostHitRate: Double { historyTokens == 0 ? 0 : Double(hostHitTokens) / Double(historyTokens) }

    /// The keys `kvcache replay --mode timed --pensieve --json` prints.
    public var jsonFields: [(String, JSONValue)] {
        [("retention", .string(retention)), ("conversations", .int(conversations)), ("turns", .int(turns)),
         ("history_tokens", .int(historyTokens)), ("history_gpu_hit_tokens", .int(gpuHitTokens)),
         ("history_host_hit_tokens", .int(hostHitTokens)), ("recomputed_tokens", .int(recomputedTokens)),
         ("host_hit_rate", .double(hostHitRate)), ("swapped_blocks", .int(swappedBlocks)),
         ("ahead_of_time_blocks", .int(aheadOfTimeBlocks)), ("dropped_blocks", .int(droppedBlocks)),
         ("host_link_bytes", .double(hostLinkBytes))]
    }
}
