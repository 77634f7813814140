import KVCache
import KVPlan
import KVRuntime
import KVTiers

/// A verifying harness: a device pool (`KVCacheManager` over a `HostDeviceMemory`) with host and disk
/// tiers below it, driven request by request with real bytes, as the sequential tier replay and the
/// tests need.
///
/// For every request, `serve` runs the tier leg as every engine does (`PrefixPlanner`: the core's
/// lookup (L1), the tiers' lookup (L2, L3), `allocate` (evictions copy blocks down), the load of the
/// lower-tier blocks into the new device blocks), then "computes" the rest (writing each block's
/// `KeyPayload`), commits, records the stored blocks and frees. With `verify` on, every block that came
/// from a cache is compared with the payload its key must have, so a wrong byte anywhere in the tiers
/// shows up in `mismatchedBlocks`. O(blocks) per request plus the copies; not thread-safe.
public final class TieredReplayHarness {
    public struct Config: Sendable {
        /// Tokens per block (the trace's block size).
        public var blockTokens: Int
        /// L1: blocks in the device pool.
        public var deviceBlocks: Int
        /// L2: blocks in host memory (0: none).
        public var hostBlocks: Int
        /// L3: blocks on disk (0: none); needs `diskDirectory`.
        public var diskBlocks: Int
        public var diskDirectory: String?
        /// The bytes each block carries (small by default: 128 bytes, two layer groups).
        public var payloadLayout: KVGeometry
        public var writePolicy: TierWritePolicy = .writeBack
        public var admission = LoadOrRecompute()
        public var verify = true
        public var policy: EvictionPolicyKind = .lru
        /// The tunables of `policy`.
        public var policyParameters = EvictionPolicyKind.Parameters()
        /// What `pgdsf` charges for recomputing a block (ignored by the other policies).
        public var recomputeCost: RecomputeCost?
        /// Start with an empty disk tier: delete the segment files a previous run left in `diskDirectory`
        /// (only files named like segments). Off: a replay starts warm from them.
        public var freshDisk = true
        /// Record `KVEvent`s in the device pool and the tiers: `manager.drainEvents` gives one stream.
        public var recordEvents = false

        public init(blockTokens: Int, deviceBlocks: Int, hostBlocks: Int, diskBlocks: Int = 0, diskDirectory: String? = nil) {
            self.blockTokens = blockTokens; self.deviceBlocks = deviceBlocks; self.hostBlocks = hostBlocks
            self.diskBlocks = diskBlocks; self.diskDirectory = diskDirectory
            // Valid by construction.
            payloadLayout = try! KVGeometry(layers: 2, kvHeads: 1, headDim: 8, dtype: .fp16, blockTokens: 2)
        }
    }

    /// Where one request's prompt blocks came from.
    public struct RequestHits: Sendable, Equatable {
        public var deviceBlocks = 0
        public var hostBlocks = 0
        public var diskBlocks = 0
        /// Blocks computed (not found, or failed to load).
        public var computedBlocks = 0
        /// Planned loads that failed (corrupt or vanished) and were recomputed.
        public var failedLoads = 0

        public init() {}
    }

    public let config: Config
    public let manager: KVCacheManager
    public let tiers: KVTierManager
    public let memory: HostDeviceMemory
    /// The tier leg every request runs.
    public let planner: PrefixPlanner
    public private(set) var verifiedBlocks = 0
    public private(set) var mismatchedBlocks = 0
    private var nextID: Int64 = 0
    private var table: [BlockID] = []

    /// - Throws: errors of the core (wrapped as `.cache`) or of the tiers.
    public init(_ config: Config) throws(TierError) {
        guard config.diskBlocks == 0 || config.diskDirectory != nil else { throw .invalidArgument("disk tier needs a directory") }
        self.config = config
        var cacheConfig = KVCacheConfig(blockTokens: config.blockTokens, capacityBlocks: config.deviceBlocks, policy: config.policy,
                                        recordEvents: config.recordEvents, recomputeCost: config.recomputeCost)
        cacheConfig.policyParameters = config.policyParameters
        do { manager = try KVCacheManager(cacheConfig) }
        catch { throw .cache(error) }
        memory = try HostDeviceMemory(layout: config.payloadLayout, capacityBlocks: config.deviceBlocks)
        var t = TierConfig(layout: config.payloadLayout, hostBlocks: config.hostBlocks)
        if config.diskBlocks > 0, let dir = config.diskDirectory {
            if config.freshDisk { try DiskBlockStore.removeSegments(in: dir) }
            let maxRecord = DiskStoreConfig.maxRecordBytes(blockBytes: config.payloadLayout.bytesPerBlock)
            t.disk = DiskStoreConfig(directory: dir, capacityBytes: max(1, config.diskBlocks) * maxRecord * 2,
                                     capacityBlocks: config.diskBlocks, layout: config.payloadLayout)
        }
        t.writePolicy = config.writePolicy
        t.admission = config.admission
        t.layerGroups = min(2, config.payloadLayout.layers)
        t.lockHostMemory = false
        t.synchronousEvictionCopies = true
        t.spillWatermark = 1.0          // disk writes happen at host eviction: deterministic
        t.calibrateAtStart = false
        t.recordEvents = config.recordEvents
        tiers = try KVTierManager(config: t, device: memory)
        manager.placeTiers(tiers)
        planner = PrefixPlanner(cache: manager, tiers: tiers)
    }

    /// Serves one request whose full prompt blocks have `keys` (chained keys, e.g. trace hash ids) and
    /// whose prompt has `promptTokens` tokens (default: `keys.count x blockTokens + 1`, so every block
    /// may be a hit, as the sequential replay counts). Keys beyond the device capacity are not cached.
    /// O(blocks) plus the copies.
    public func serve(keys allKeys: [BlockKey], promptTokens: Int? = nil) throws(TierError) -> RequestHits {
        let B = config.blockTokens
        let keys = Array(allKeys.prefix(config.deviceBlocks))
        let tokens = min(promptTokens ?? (keys.count * B + 1), keys.count * B + B)
        guard tokens >= 1 else { return RequestHits() }
        let seq = SequenceID(nextID)
        nextID += 1
        var hits = RequestHits()
        tiers.waitForTransfers()   // the previous request's disk writes land first: the replay is deterministic
        do {
            try manager.addSequence(seq, promptKeys: keys, promptTokens: tokens)
        } catch { throw .cache(error) }
        // Like the sequential replay: KV is computed for the full blocks only (the last prompt token's
        // logits are the engine's business), so a chain of `deviceBlocks` blocks always fits.
        let computeTokens = min(tokens, keys.count * B)
        guard let (deviceTokens, load) = try planner.admit(seq, keys: keys, promptTokens: tokens, computeTokens: computeTokens) else {
            do { try manager.free(seq) } catch { throw .cache(error) }
            throw TierError.full
        }
        let first = deviceTokens / B
        let loaded = load.loadedBlocks
        hits.deviceBlocks = first
        hits.hostBlocks = load.hostBlocks
        hits.diskBlocks = load.diskBlocks
        hits.failedLoads = load.failedBlocks
        let full = min(tokens / B, keys.count)
        hits.computedBlocks = full - first - loaded
        do {
            table = try manager.blockTable(seq)
            if config.verify { for i in 0 ..< first + loaded { verify(block: table[i], key: keys[i]) } }
            // "Compute" every other full block: write the payload its key stands for.
            for i in first + loaded ..< full { writePayload(block: table[i], key: keys[i]) }
            try manager.commit(seq, computedTokens: computeTokens - deviceTokens - load.tokens)
        } catch { throw .cache(error) }
        try planner.recordStored(seq, keys: keys, from: first)
        do { try manager.free(seq) } catch { throw .cache(error) }
        return hits
    }

    /// Finishes the tiers' transfers and releases the disk directory (see `KVTierManager.close`).
    public func close() { tiers.close() }

    private func writePayload(block: BlockID, key: BlockKey) {
        _ = memory.withBlock(block) { KeyPayload.fill($0, key: key) }
    }

    private func verify(block: BlockID, key: BlockKey) {
        let same = memory.withBlock(block) { KeyPayload.matches(UnsafeRawBufferPointer($0), key: key) } ?? false
        verifiedBlocks += 1
        if !same { mismatchedBlocks += 1 }
    }
}
