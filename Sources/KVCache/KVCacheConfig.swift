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
    /// Tunables of `policy` (first-use weight, protection, predictor horizon).
    public var policyParameters = EvictionPolicyKind.Parameters()
    /// Prices a block's recompute for cost-aware policies: `pgdsf` needs it (the manager refuses to be
    /// built without one), the others ignore it. The core knows no model, so there is no default.
    public var recomputeCost: RecomputeCost?
    /// Keep a `KVEvent` log for `drainEvents`.
    public var recordEvents = false

    public init(blockTokens: Int = 16, capacityBlocks: Int, namespace: String = "",
                enablePrefixCaching: Bool = true, policy: EvictionPolicyKind = .lru, recordEvents: Bool = false,
                recomputeCost: RecomputeCost? = nil) {
        self.blockTokens = blockTokens
        self.capacityBlocks = capacityBlocks
        self.namespace = namespace
        self.enablePrefixCaching = enablePrefixCaching
        self.policy = policy
        self.recordEvents = recordEvents
        self.recomputeCost = recomputeCost
    }
}
