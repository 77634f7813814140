/// The result of `KVCacheManager.lookup`: the longest cached prefix of a prompt.
public struct PrefixHit: Sendable, Equatable {
    /// Leading prompt blocks found in the cache.
    public var cachedBlocks: Int
    /// Prompt tokens whose KV need not be computed (`cachedBlocks x blockTokens`, and never the last
    /// prompt token, whose logits must be computed).
    public var cachedTokens: Int
    public init(cachedBlocks: Int, cachedTokens: Int) {
        self.cachedBlocks = cachedBlocks
        self.cachedTokens = cachedTokens
    }
}

/// The result of `KVCacheManager.allocate`.
public enum AllocationOutcome: Sendable, Equatable {
    /// Slots are ready; `newBlocks` blocks were taken from the pool (copies included).
    case allocated(newBlocks: Int)
    /// Not enough free or evictable blocks; nothing changed. The scheduler preempts or waits.
    case insufficientBlocks(needed: Int, available: Int)
}
