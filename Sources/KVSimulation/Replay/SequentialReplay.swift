import KVCache

/// Replays a trace's prefix structure through the real `KVCacheManager`, one request at a time in
/// file order, with these exact semantics (so any other implementation can check the figures):
///
/// - k = the number of leading `hashIDs` already cached; hit tokens += min(k x B, inputTokens),
///   where B is the trace's tokens per hash block;
/// - then the request's whole chain is cached (block i's parent is block i-1) and stamped most
///   recently used;
/// - while more than `capacityBlocks` blocks are cached, the policy's victim among unheld leaves not
///   on the current chain is evicted; when only the current chain is left, its tail is dropped.
///
/// Each request is a sequence known by its keys: its chain is looked up, allocated (evicting as
/// needed), committed and freed, exactly as a server would drive the manager.
public struct SequentialReplay {
    public struct Result: Sendable, Equatable {
        public var requests = 0
        public var inputTokens = 0
        public var hitTokens = 0
        public var evictedBlocks = 0
        public var peakBlocks = 0
        public var tokenHitRate: Double { inputTokens == 0 ? 0 : Double(hitTokens) / Double(inputTokens) }
    }

    public let manager: KVCacheManager
    public private(set) var result = Result()
    private var keys: [BlockKey] = []
    private var nextID: Int64 = 0

    /// - Parameters:
    ///   - capacityBlocks: blocks the cache may hold (N).
    ///   - blockTokens: tokens per trace hash block (B; 512 for Mooncake).
    public init(capacityBlocks: Int, blockTokens: Int, policy: EvictionPolicyKind = .lru) throws(KVCacheError) {
        manager = try KVCacheManager(KVCacheConfig(blockTokens: blockTokens, capacityBlocks: capacityBlocks, policy: policy))
    }

    /// The block key a trace hash id stands for: hash ids already name whole prefixes, so the key is
    /// the id itself, tagged so it cannot be the reserved zero key.
    @inlinable
    public static func key(forHashID id: UInt64) -> BlockKey { BlockKey(lo: id, hi: 0x7472_6163_655F_6964) }

    /// Replays one request. O(chain length x log cached).
    public mutating func replay(_ request: TraceRequest) throws(KVCacheError) {
        let B = manager.blockTokens
        keys.removeAll(keepingCapacity: true)
        for id in request.hashIDs { keys.append(Self.key(forHashID: id)) }
        let k = manager.matchLength(keys)
        result.requests += 1
        result.inputTokens += request.inputTokens
        result.hitTokens += min(k * B, request.inputTokens)

        let chain = min(keys.count, manager.capacityBlocks)
        if chain > 0 {
            if chain < keys.count {
                // The tail that does not fit is cached and dropped at once: it counts as evicted.
                result.evictedBlocks += keys.count - chain
                keys.removeLast(keys.count - chain)
            }
            let seq = SequenceID(nextID)
            nextID += 1
            let evictedBefore = manager.stats.evictedBlocks
            // One token past the chain: the lookup may then count every chain block as cached.
            try manager.addSequence(seq, promptKeys: keys, promptTokens: chain * B + 1)
            let hit = try manager.lookup(seq)
            let todo = chain * B - hit.cachedTokens
            guard case .allocated = try manager.allocate(seq, newTokens: todo) else {
                preconditionFailure("a chain of at most capacity blocks always fits")
            }
            try manager.commit(seq, computedTokens: todo)
            try manager.free(seq)
            result.evictedBlocks += manager.stats.evictedBlocks - evictedBefore
        }
        result.peakBlocks = max(result.peakBlocks, manager.stats.cachedBlocks)
    }
}
