/// A change in where prefixes live, in the shape of vLLM's KV events, for routers that track which
/// node (and tier) holds which prefix. Recorded only when `KVCacheConfig.recordEvents` is on.
public enum KVEvent: Sendable, Equatable {
    /// Blocks were published to a tier: `keys` in chain order, the first one's parent is `parent`
    /// (nil for a first block); each holds `blockTokens` tokens.
    case blockStored(keys: [BlockKey], parent: BlockKey?, blockTokens: Int, tier: Tier)
    /// Blocks left a tier.
    case blockRemoved(keys: [BlockKey], tier: Tier)
    /// Every block of the cache was dropped.
    case allBlocksCleared
}

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

/// Configuration of a `KVCacheManager`.
public struct KVCacheConfig: Sendable {
    /// Tokens per block, 1...1024.
    public var blockTokens = 16
    /// Blocks in the device pool.
    public var capacityBlocks: Int
    /// Model or namespace id mixed into every key: caches of different models never match.
    public var namespace = ""
    /// When off, nothing is cached: lookups miss and full blocks are not published.
    public var enablePrefixCaching = true
    /// Eviction order of unheld cached blocks.
    public var policy: EvictionPolicyKind = .lru
    /// Prices a block's recompute for cost-aware policies (`pgdsf`).
    public var recomputeCost: RecomputeCost = .default
    /// Keep a `KVEvent` log for `drainEvents`.
    public var recordEvents = false

    public init(blockTokens: Int = 16, capacityBlocks: Int, namespace: String = "",
                enablePrefixCaching: Bool = true, policy: EvictionPolicyKind = .lru, recordEvents: Bool = false,
                recomputeCost: RecomputeCost = .default) {
        self.blockTokens = blockTokens
        self.capacityBlocks = capacityBlocks
        self.namespace = namespace
        self.enablePrefixCaching = enablePrefixCaching
        self.policy = policy
        self.recordEvents = recordEvents
        self.recomputeCost = recomputeCost
    }
}

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

/// Something that records `KVEvent`s of its own (a lower tier), drained into the manager's stream so a
/// router reads one stream for every tier.
public protocol KVEventSource: AnyObject {
    /// Moves the recorded events into `out`.
    func drainEvents(into out: inout [KVEvent])
}

/// Lets a lower tier save a block's bytes before the device pool reuses it.
///
/// The manager calls `willEvict(block:key:parent:)`; an observer that has no use for the parent
/// implements only `willEvict(block:key:)`, which the default forwards to.
public protocol BlockEvictionObserver: AnyObject {
    /// Called once per evicted block, before its id is handed to a new owner.
    func willEvict(block: BlockID, key: BlockKey)
    /// Called once per evicted block, before its id is handed to a new owner, with the key of its
    /// parent in the prefix tree (nil for a first block): a tier that keeps the block reports it with
    /// that parent, so a router can rebuild the tree from the tier's events. The parent is still cached.
    func willEvict(block: BlockID, key: BlockKey, parent: BlockKey?)
}

extension BlockEvictionObserver {
    /// Ignores the parent.
    public func willEvict(block: BlockID, key: BlockKey, parent: BlockKey?) { willEvict(block: block, key: key) }
}
