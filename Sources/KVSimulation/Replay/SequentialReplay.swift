import KVCache
import KVData
import KVTestSupport
import KVTiers

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
///
/// Every hit is also priced: `savedPrefillSeconds` adds the modelled time to recompute the hit
/// prefix (`RecomputeCost.prefixSeconds` of its hit tokens), with one cost for every policy so that
/// runs compare. It is modelled, not measured; hits from lower tiers count too (their load time is
/// not subtracted).
///
/// With lower tiers (`hostBlocks`, `diskBlocks` > 0) the replay runs through `TieredReplayHarness`
/// instead: blocks evicted from the device pool are copied, as real bytes, to host memory and disk,
/// and a request's blocks found there (after its device hits) are loaded back and verified; their
/// tokens count as L2 and L3 hits. That replay is a verification run (every block carries its key's
/// `KeyPayload`, every loaded byte is checked), so it runs the very harness the tests run, from
/// KVTestSupport: its tier leg is `PrefixPlanner`'s, as in every engine, and no library a server
/// links carries a harness.
public struct SequentialReplay {
    public struct Result: Sendable, Equatable {
        public var requests = 0
        public var inputTokens = 0
        /// Hit tokens, all tiers.
        public var hitTokens = 0
        /// Of `hitTokens`: found in the device pool, host memory, on disk.
        public var hitTokensL1 = 0
        public var hitTokensL2 = 0
        public var hitTokensL3 = 0
        /// Blocks evicted from the device pool.
        public var evictedBlocks = 0
        /// Most device-pool blocks cached after any request.
        public var peakBlocks = 0
        /// Blocks loaded from a lower tier whose bytes were wrong (must stay 0).
        public var mismatchedBlocks = 0
        /// Modelled prefill seconds the hits saved (all tiers), at `recomputeCost`.
        public var savedPrefillSeconds = 0.0
        public var tokenHitRate: Double { inputTokens == 0 ? 0 : Double(hitTokens) / Double(inputTokens) }
    }

    /// Lower tiers under the device pool.
    public struct Tiers: Sendable {
        public var hostBlocks: Int
        public var diskBlocks: Int
        /// Folder for the disk tier (needed when `diskBlocks` > 0); emptied first.
        public var diskDirectory: String?
        public init(hostBlocks: Int = 0, diskBlocks: Int = 0, diskDirectory: String? = nil) {
            self.hostBlocks = hostBlocks; self.diskBlocks = diskBlocks; self.diskDirectory = diskDirectory
        }
    }

    public let manager: KVCacheManager
    /// Prices hits (`savedPrefillSeconds`) and, for `pgdsf`, blocks.
    public let recomputeCost: RecomputeCost
    /// The device pool with its lower tiers, when there are any.
    public let tiered: TieredReplayHarness?
    public private(set) var result = Result()
    /// The offline policy told about each request before it is served, when it is the one evicting.
    private let belady: BeladyPolicy?
    private var keys: [BlockKey] = []
    private var nextID: Int64 = 0
    /// Requests replayed, warm-up included (`result.requests` restarts with `resetCounts`).
    private var served = 0

    /// - Parameters:
    ///   - capacityBlocks: blocks the device pool may hold (N).
    ///   - blockTokens: tokens per trace hash block (B; 512 for Mooncake).
    ///   - recomputeCost: prices hits and, for `pgdsf`, blocks.
    ///   - parameters: the tunables of `policy`.
    public init(capacityBlocks: Int, blockTokens: Int, policy: EvictionPolicyKind = .lru,
                parameters: EvictionPolicyKind.Parameters = .init(),
                recomputeCost: RecomputeCost, tiers: Tiers = Tiers()) throws {
        self.recomputeCost = recomputeCost
        belady = nil
        if tiers.hostBlocks > 0 || tiers.diskBlocks > 0 {
            var config = TieredReplayHarness.Config(blockTokens: blockTokens, deviceBlocks: capacityBlocks,
                                                  hostBlocks: tiers.hostBlocks, diskBlocks: tiers.diskBlocks,
                                                  diskDirectory: tiers.diskDirectory)
            config.policy = policy
            config.policyParameters = parameters
            config.recomputeCost = recomputeCost
            let cache = try TieredReplayHarness(config)
            tiered = cache
            manager = cache.manager
        } else {
            tiered = nil
            var config = KVCacheConfig(blockTokens: blockTokens, capacityBlocks: capacityBlocks, policy: policy,
                                       recomputeCost: recomputeCost)
            config.policyParameters = parameters
            manager = try KVCacheManager(config)
        }
    }

    /// A device pool only, evicting in the order of `policy` (a fresh instance: an online policy
    /// with options, or a `BeladyPolicy` over this very trace, whose `willServe` the replay calls).
    /// With `recordEvents` the manager keeps its KV events for `manager.drainEvents`.
    public init(capacityBlocks: Int, blockTokens: Int, policy: any EvictionPolicy, recomputeCost: RecomputeCost,
                recordEvents: Bool = false) throws {
        self.recomputeCost = recomputeCost
        tiered = nil
        belady = policy as? BeladyPolicy
        manager = try KVCacheManager(KVCacheConfig(blockTokens: blockTokens, capacityBlocks: capacityBlocks,
                                                   recordEvents: recordEvents, recomputeCost: recomputeCost), policy: policy)
    }

    /// The block keys the replay gives `request` (the trace's blocks, partial last one included;
    /// none without hash ids), appended to `keys`: the rows of a `NextUseTable` for `BeladyPolicy`.
    public static func appendKeys(of request: TraceRequest, blockTokens: Int, to keys: inout [BlockKey]) {
        guard !request.hashIDs.isEmpty else { return }
        TracePromptKeys.append(for: request, index: 0, blockTokens: blockTokens, partialLastBlock: true, to: &keys)
    }

    /// The next-use table of `requests` as this replay keys them, for `BeladyPolicy`. O(total blocks).
    public static func nextUseTable(_ requests: some Collection<TraceRequest>, blockTokens: Int) -> NextUseTable {
        NextUseTable(requests: requests.map { r in
            var keys: [BlockKey] = []
            appendKeys(of: r, blockTokens: blockTokens, to: &keys)
            return keys
        })
    }

    /// Starts counting afresh (every figure of `result` back to zero, peak blocks included) while the
    /// cache and its policy keep their state: what the replay served so far was a warm-up.
    public mutating func resetCounts() { result = Result() }

    /// Finishes the lower tiers' transfers and releases the disk folder.
    public func finish() { tiered?.close() }

    /// Replays one request. O(chain length x log cached), plus the copies with lower tiers.
    public mutating func replay(_ request: TraceRequest) throws {
        let B = manager.blockTokens
        keys.removeAll(keepingCapacity: true)
        // The timed replay's key mapping, with the trace's blocks as cache blocks (partial last one
        // included); a request without hash ids shares nothing and is not cached.
        Self.appendKeys(of: request, blockTokens: B, to: &keys)
        belady?.willServe(request: served)
        served += 1
        result.requests += 1
        result.inputTokens += request.inputTokens
        let evictedBefore = manager.stats.evictedBlocks
        // The tail that does not fit the pool is cached and dropped at once: it counts as evicted.
        let dropped = max(0, keys.count - manager.capacityBlocks)

        if let tiered {
            let h = try tiered.serve(keys: keys)
            let l1 = min(h.deviceBlocks * B, request.inputTokens)
            let l12 = min((h.deviceBlocks + h.hostBlocks) * B, request.inputTokens)
            let all = min((h.deviceBlocks + h.hostBlocks + h.diskBlocks) * B, request.inputTokens)
            result.hitTokensL1 += l1
            result.hitTokensL2 += l12 - l1
            result.hitTokensL3 += all - l12
            result.hitTokens += all
            result.savedPrefillSeconds += recomputeCost.prefixSeconds(tokens: all)
            result.mismatchedBlocks = tiered.mismatchedBlocks
        } else {
            let k = manager.matchLength(keys)
            let hit = min(k * B, request.inputTokens)
            result.hitTokens += hit
            result.hitTokensL1 += hit
            result.savedPrefillSeconds += recomputeCost.prefixSeconds(tokens: hit)
            let chain = keys.count - dropped
            if chain > 0 {
                keys.removeLast(dropped)
                let seq = SequenceID(nextID)
                nextID += 1
                // One token past the chain: the lookup may then count every chain block as cached.
                try manager.addSequence(seq, promptKeys: keys, promptTokens: chain * B + 1)
                let cached = try manager.lookup(seq)
                let todo = chain * B - cached.cachedTokens
                guard case .allocated = try manager.allocate(seq, newTokens: todo) else {
                    preconditionFailure("a chain of at most capacity blocks always fits")
                }
                try manager.commit(seq, computedTokens: todo)
                try manager.free(seq)
            }
        }
        result.evictedBlocks += manager.stats.evictedBlocks - evictedBefore + dropped
        result.peakBlocks = max(result.peakBlocks, manager.stats.cachedBlocks)
    }
}
