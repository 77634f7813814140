/// A change in where prefixes live, in the shape of vLLM's KV events, for routers that track which
/// node (and tier) holds which prefix. Recorded only when `KVCacheConfig.recordEvents` is on.
public enum KVEvent: Sendable, Equatable {
    /// Blocks were published to a tier: `keys` in chain order, the first one's parent is `parent`
    /// (nil for a first block); each holds `blockTokens` tokens. `tokens` are the blocks' token ids,
    /// `keys.count x blockTokens` of them, where the publisher knows them (device blocks of sequences
    /// added with token ids); empty otherwise.
    case blockStored(keys: [BlockKey], parent: BlockKey?, blockTokens: Int, tier: Tier, tokens: [UInt32] = [])
    /// Blocks left a tier.
    case blockRemoved(keys: [BlockKey], tier: Tier)
    /// Every block of the cache was dropped.
    case allBlocksCleared
}

/// Something that records `KVEvent`s of its own (a lower tier), drained into the manager's stream so a
/// router reads one stream for every tier.
public protocol KVEventSource: AnyObject {
    /// Moves the recorded events into `out`.
    func drainEvents(into out: inout [KVEvent])
}
