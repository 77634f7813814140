import KVCache
import KVPlan

/// A device pool (`KVCacheManager` over a `HostDeviceMemory`) with host and disk tiers below it, driven
/// request by request with real bytes: the shape a trace replay or a simple engine needs.
///
/// For every request, `serve` does what a server does: the core's lookup (L1), the tiers' lookup (L2,
/// L3), `allocate` (evictions copy blocks down), a load of the lower-tier blocks into the new device
/// blocks, "computing" the rest (writing each block's key-derived payload), `commit`, `free`. With
/// `verify` on, every block that came from a cache is compared with the payload its key must have, so a
/// wrong byte anywhere in the tiers shows up in `mismatchedBlocks`.
public final class TieredPrefixCache {
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
        /// What `pgdsf` charges for recomputing a block (ignored by the other policies).
        public var recomputeCost: RecomputeCost = .default
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
    }

    public let config: Config
    public let manager: KVCacheManager
    public let tiers: KVTierManager
    public let memory: HostDeviceMemory
    public private(set) var verifiedBlocks = 0
    public private(set) var mismatchedBlocks = 0
    private var nextID: Int64 = 0
    private var table: [BlockID] = []
    private var scratch: [UInt8]

    /// - Throws: errors of the core (`KVCacheError` wrapped as `.invalidArgument`) or of the tiers.
    public init(_ config: Config) throws(TierError) {
        guard config.diskBlocks == 0 || config.diskDirectory != nil else { throw .invalidArgument("disk tier needs a directory") }
        self.config = config
        do { manager = try KVCacheManager(KVCacheConfig(blockTokens: config.blockTokens, capacityBlocks: config.deviceBlocks, policy: config.policy,
                                                     recordEvents: config.recordEvents, recomputeCost: config.recomputeCost)) }
        catch { throw .invalidArgument("core: \(error)") }
        memory = try HostDeviceMemory(layout: config.payloadLayout, capacityBlocks: config.deviceBlocks)
        var t = TierConfig(layout: config.payloadLayout, hostBlocks: config.hostBlocks)
        if config.diskBlocks > 0, let dir = config.diskDirectory {
            if config.freshDisk { try DiskBlockStore.removeSegments(in: dir) }
            let maxRecord = DiskRecordFormat.headerSize + KVByteCodec.maxEncodedSize(rawBytes: config.payloadLayout.bytesPerBlock)
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
        manager.evictionObserver = tiers
        manager.lowerTierEvents = [tiers]
        scratch = Array(repeating: 0, count: config.payloadLayout.bytesPerBlock)
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
            let hit = try manager.lookup(seq)
            let plan = tiers.lookup(keys: keys, deviceBlocks: hit.cachedBlocks, maxBlocks: (tokens - 1) / B)
            // Like the sequential replay: KV is computed for the full blocks only (the last prompt token's
            // logits are the engine's business), so a chain of `deviceBlocks` blocks always fits.
            let computeTokens = min(tokens, keys.count * B)
            guard case .allocated = try manager.allocate(seq, newTokens: computeTokens - hit.cachedTokens) else {
                try manager.free(seq)
                throw TierError.full
            }
            tiers.waitForEvictionCopies()
            table = try manager.blockTable(seq)
            let first = hit.cachedBlocks
            let handle = try tiers.load(plan, keys: keys, into: Array(table[first ..< first + plan.loadBlocks]))
            handle.wait()
            let loaded = handle.loadedPrefixBlocks
            hits.deviceBlocks = first
            let fromDisk = handle.loadedFromDisk
            for i in 0 ..< loaded { if fromDisk[i] { hits.diskBlocks += 1 } else { hits.hostBlocks += 1 } }
            hits.failedLoads = plan.loadBlocks - loaded
            if config.verify { for i in 0 ..< first + loaded { verify(block: table[i], key: keys[i]) } }
            // "Compute" every other full block: write the payload its key stands for.
            let full = min(tokens / B, keys.count)
            for i in first + loaded ..< full { writePayload(block: table[i], key: keys[i]) }
            hits.computedBlocks = full - first - loaded
            try manager.commit(seq, computedTokens: computeTokens - hit.cachedTokens)
            table = try manager.blockTable(seq)
            for i in first ..< full { tiers.noteStored(block: table[i], key: keys[i], parent: i == 0 ? nil : keys[i - 1]) }
            try manager.free(seq)
        } catch let e as TierError {
            throw e
        } catch {
            throw .invalidArgument("core: \(error)")
        }
        return hits
    }

    /// Finishes the tiers' transfers and releases the disk directory (see `KVTierManager.close`).
    public func close() { tiers.close() }

    /// The payload a block with `key` carries: a pattern derived from the key, different in every byte.
    public static func payload(for key: BlockKey, into out: UnsafeMutableRawBufferPointer) {
        var rng = SplitMix64(seed: key.lo ^ (key.hi &* 0x9E37_79B9))
        var i = 0
        while i + 8 <= out.count { out.storeBytes(of: rng.next(), toByteOffset: i, as: UInt64.self); i += 8 }
        while i < out.count { out[i] = UInt8(truncatingIfNeeded: rng.next()); i += 1 }
    }

    private func writePayload(block: BlockID, key: BlockKey) {
        _ = memory.withBlock(block) { Self.payload(for: key, into: $0) }
    }

    private func verify(block: BlockID, key: BlockKey) {
        scratch.withUnsafeMutableBytes { Self.payload(for: key, into: $0) }
        let same = memory.withBlock(block) { dev in
            scratch.withUnsafeBytes { $0.elementsEqual(UnsafeRawBufferPointer(dev)) }
        } ?? false
        verifiedBlocks += 1
        if !same { mismatchedBlocks += 1 }
    }
}
