/// Counters of a `KVCacheManager`. Plain values, cheap to copy.
public struct KVCacheStats: Sendable, Equatable {
    public var capacityBlocks = 0
    /// Blocks with at least one holder.
    public var usedBlocks = 0
    /// Blocks in the prefix cache (held or not).
    public var cachedBlocks = 0
    /// Blocks on the free list (never cached or evicted).
    public var freeBlocks = 0
    /// `lookup` calls and the prompt tokens they asked about.
    public var lookups = 0
    public var queryTokens = 0
    /// Prompt tokens found cached by `lookup`.
    public var hitTokens = 0
    /// Blocks published, blocks reused from the cache instead of a duplicate, blocks evicted.
    public var insertedBlocks = 0
    public var deduplicatedBlocks = 0
    public var evictedBlocks = 0
    /// Partial blocks copied on write after a fork.
    public var copiedBlocks = 0

    public init() {}

    /// Fraction of blocks held by sequences.
    public var usage: Double { capacityBlocks == 0 ? 0 : Double(usedBlocks) / Double(capacityBlocks) }
    /// Fraction of queried prompt tokens that were cached.
    public var hitRate: Double { queryTokens == 0 ? 0 : Double(hitTokens) / Double(queryTokens) }
}
