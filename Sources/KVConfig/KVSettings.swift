import KVCache
import KVPlan
import KVTiers

/// The embedded library's settings: the device pool and its eviction policy, the KV layout, the tiers
/// below the pool and the KV-event endpoints, as one typed value.
///
/// Contract: a value built by `KVSettingsLoader` has passed `validate()`, so every field is within
/// its documented range and the sections agree with each other; building from it (`cache.makeManager()`,
/// `tierConfig()` then `KVTierManager`, KVEvents' `ZmqEventPublisher.open(settings:)`) then fails only
/// for lack of memory or of the system resources named (a folder, an address to bind), or, for
/// `tierConfig()`, for want of the `layout.*` keys a tier needs (named). Keys are those of the YAML file
/// (docs/CONFIGURATION.md), `KVCACHE_` + the key upper-cased with `.` as `_` for the environment.
public struct KVSettings: Sendable, Equatable {
    public var cache: CacheSettings
    public var layout = LayoutSettings()
    public var tiers = TierSettings()
    public var events = EventSettings()

    public init(cache: CacheSettings, layout: LayoutSettings = LayoutSettings(), tiers: TierSettings = TierSettings(),
                events: EventSettings = EventSettings()) {
        self.cache = cache
        self.layout = layout
        self.tiers = tiers
        self.events = events
    }

    /// Checks every section, then the sections against each other: with a tier and a layout given,
    /// the layout whole and below 1 GiB a block, at most one layer group per layer. A tier without any
    /// `layout.*` key loads (the cache and its C ABI need no layout); `tierConfig()` then names the
    /// missing key. O(1).
    /// - Throws: `KVConfigError.invalidValue` naming the first key out of range.
    public func validate() throws(KVConfigError) {
        try cache.validate()
        try layout.validate()
        try tiers.validate()
        try events.validate()
        if tiers.isConfigured && layout.isGiven {
            let geometry = try layout.geometry(blockTokens: cache.blockTokens)
            try check(tiers.layerGroups <= geometry.layers, Key.layerGroups,
                      "must be at most \(Key.layers.name) (\(geometry.layers)), got \(tiers.layerGroups)")
        }
    }
}

/// The engine's KV layout: what one block of the tiers holds (`layout.*`; block tokens are
/// `block_tokens`). Needed to build a tier (`tierConfig()`); all zero when not given.
public struct LayoutSettings: Sendable, Equatable {
    /// `layout.layers`, `layout.kv_heads`, `layout.head_dim`: 1...65536 each, or 0 when not given.
    public var layers = 0
    public var kvHeads = 0
    public var headDim = 0
    /// `layout.dtype_bytes`: bytes per element, 1 (fp8), 2 (fp16/bf16) or 4 (fp32).
    public var dtypeBytes = 2

    public init() {}

    /// Whether any of `layers`, `kv_heads`, `head_dim` was given.
    public var isGiven: Bool { layers > 0 || kvHeads > 0 || headDim > 0 }

    public func validate() throws(KVConfigError) {
        for (value, key) in [(layers, Key.layers), (kvHeads, Key.kvHeads), (headDim, Key.headDim)] {
            try check((0...65_536).contains(value), key, "must be in 1...65536, got \(value)")
        }
        try check([1, 2, 4].contains(dtypeBytes), Key.dtypeBytes, "must be 1, 2 or 4, got \(dtypeBytes)")
    }

    /// The geometry of blocks of `blockTokens` tokens.
    /// - Throws: `invalidValue` naming the first `layout.*` key not given, or `layout.layers` when a
    ///   block would reach 1 GiB.
    public func geometry(blockTokens: Int) throws(KVConfigError) -> KVGeometry {
        for (value, key) in [(layers, Key.layers), (kvHeads, Key.kvHeads), (headDim, Key.headDim)] {
            try check(value > 0, key, "is needed when a tier is configured (\(Key.hostBlocks.name) or \(Key.diskPath.name))")
        }
        let dtype: KVDType = switch dtypeBytes { case 1: .fp8; case 4: .fp32; default: .fp16 }
        do {
            return try KVGeometry(layers: layers, kvHeads: kvHeads, headDim: headDim, dtype: dtype, blockTokens: blockTokens)
        } catch {
            throw .invalidValue(key: Key.layers.name, variable: Key.layers.variable,
                                message: "a block of \(blockTokens) tokens x \(layers) layers x \(kvHeads) KV heads x \(headDim) x \(dtypeBytes) bytes x 2 (K, V) must stay below 1 GiB")
        }
    }
}

/// The device pool: `KVCacheConfig` and the policy's tunables.
public struct CacheSettings: Sendable, Equatable {
    /// `block_tokens`: tokens per block, 1...1024.
    public var blockTokens = 16
    /// `capacity_blocks`: blocks of the device pool, 1...Int32.max (no default).
    public var capacityBlocks: Int
    /// `namespace`: mixed into every key.
    public var namespace = ""
    /// `prefix_caching`: off caches nothing.
    public var prefixCaching = true
    /// `record_events`: keep the event log for `drainEvents` / kvcache_drain_events.
    public var recordEvents = false
    /// `policy`: one of `EvictionPolicyKind`'s names.
    public var policy = EvictionPolicyKind.lru
    /// `first_use_weight`, `protection`, `horizon_factor`.
    public var policyParameters = EvictionPolicyKind.Parameters()
    /// `recompute_seconds_per_token` and `recompute_seconds_per_context_pair` (both 0: not given).
    public var recomputeCost: RecomputeCost?

    public init(capacityBlocks: Int) { self.capacityBlocks = capacityBlocks }

    /// The core's configuration of this pool.
    public var cacheConfig: KVCacheConfig {
        var c = KVCacheConfig(blockTokens: blockTokens, capacityBlocks: capacityBlocks, namespace: namespace,
                              enablePrefixCaching: prefixCaching, policy: policy, recordEvents: recordEvents,
                              recomputeCost: recomputeCost)
        c.policyParameters = policyParameters
        return c
    }

    /// A new manager of this pool. O(capacity).
    public func makeManager() throws(KVCacheError) -> KVCacheManager { try KVCacheManager(cacheConfig) }

    public func validate() throws(KVConfigError) {
        try check((1...1024).contains(blockTokens), Key.blockTokens, "must be in 1...1024, got \(blockTokens)")
        try check((1...Int(Int32.max)).contains(capacityBlocks), Key.capacityBlocks,
                  "must be in 1...\(Int32.max), got \(capacityBlocks)")
        try check(policyParameters.firstUseWeight.isFinite && (0...1).contains(policyParameters.firstUseWeight),
                  Key.firstUseWeight, "must be in 0...1, got \(policyParameters.firstUseWeight)")
        try check(policyParameters.protection.isFinite && (0...1e6).contains(policyParameters.protection),
                  Key.protection, "must be in 0...1000000, got \(policyParameters.protection)")
        try check(policyParameters.horizonFactor.isFinite && policyParameters.horizonFactor > 0
                      && policyParameters.horizonFactor <= 1e6,
                  Key.horizonFactor, "must be in (0, 1000000], got \(policyParameters.horizonFactor)")
        try check(!policy.needsRecomputeCost || recomputeCost != nil, Key.policy,
                  "\(policy.rawValue) prices recomputation: set \(Key.secondsPerToken.name) and \(Key.secondsPerPair.name)")
    }
}

/// The tiers below the device pool: host memory and a disk store (sizes and the disk's folder).
public struct TierSettings: Sendable, Equatable {
    /// `tiers.host_blocks`: blocks of host memory (0: none).
    public var hostBlocks = 0
    /// `tiers.disk_path`: the disk tier's folder (nil: no disk tier).
    public var diskPath: String?
    /// `tiers.disk_bytes`: the disk tier's size; > 0 exactly when `diskPath` is set.
    public var diskBytes = 0
    /// `tiers.workers`: transfer threads, 1...64.
    public var workers = 2
    /// `tiers.layer_groups`: byte ranges each block is copied as, 1...4096.
    public var layerGroups = 1
    /// `tiers.spill_watermark`: host occupancy in (0, 1] above which cold blocks go to disk.
    public var spillWatermark = 0.9
    /// `tiers.numa_node`: the NUMA node of host memory (nil: the calling thread's).
    public var numaNode: Int?
    /// `tiers.numa_device`: place host memory on the node nearest the GPU at this PCI address instead.
    public var numaDevice: String?
    /// `tiers.lock_host_memory`: page-lock host memory where permitted.
    public var lockHostMemory = true
    /// `tiers.compress`: the disk tier's KV byte-plane codec (zstd); false stores blocks raw.
    public var compress = true
    /// `tiers.write_policy`: `write_back`, `write_through` or `after_hits:N`.
    public var writePolicy = TierWritePolicy.writeBack

    public init() {}

    /// Whether any tier is configured (host blocks or a disk folder).
    public var isConfigured: Bool { hostBlocks > 0 || diskPath != nil }

    /// The host tier's placement.
    public var placement: NumaPlacement {
        if let numaDevice { return .nearDevice(pciAddress: numaDevice) }
        return numaNode.map { .node($0) } ?? .local
    }

    public func validate() throws(KVConfigError) {
        try check((0...Int(Int32.max)).contains(hostBlocks), Key.hostBlocks, "must be in 0...\(Int32.max), got \(hostBlocks)")
        try check(diskBytes >= 0, Key.diskBytes, "must not be negative, got \(diskBytes)")
        try check(diskPath.map { !$0.isEmpty } ?? true, Key.diskPath, "must not be empty (leave it out for no disk tier)")
        try check(diskPath == nil || diskBytes > 0, Key.diskBytes, "must be > 0 when \(Key.diskPath.name) is set")
        try check(diskPath != nil || diskBytes == 0, Key.diskPath, "is needed when \(Key.diskBytes.name) is \(diskBytes)")
        try check((1...64).contains(workers), Key.workers, "must be in 1...64, got \(workers)")
        try check((1...4096).contains(layerGroups), Key.layerGroups, "must be in 1...4096, got \(layerGroups)")
        try check(spillWatermark.isFinite && spillWatermark > 0 && spillWatermark <= 1, Key.spillWatermark,
                  "must be in (0, 1], got \(spillWatermark)")
        try check(numaNode.map { (0...4095).contains($0) } ?? true, Key.numaNode, "must be in 0...4095, got \(numaNode ?? 0)")
        try check(numaDevice.map { !$0.isEmpty && $0.count <= 64 } ?? true, Key.numaDevice,
                  "must be a PCI address such as 0000:3b:00.0")
        try check(numaNode == nil || numaDevice == nil, Key.numaDevice, "excludes \(Key.numaNode.name): give one")
        if case let .writeAfterHits(n) = writePolicy {
            try check(n >= 1 && n <= 1_000_000, Key.writePolicy, "after_hits:N needs N in 1...1000000, got \(n)")
        }
    }

    /// `writePolicy` as the file spells it.
    public var writePolicyName: String {
        switch writePolicy {
        case .writeBack: "write_back"
        case .writeThrough: "write_through"
        case let .writeAfterHits(n): "after_hits:\(n)"
        }
    }
}

/// Where KV events are published (vLLM's `KVEventsConfig`: a ZMQ PUB socket and a replay socket).
public struct EventSettings: Sendable, Equatable {
    /// `events.enabled`: publish at all.
    public var enabled = false
    /// `events.endpoint`: the PUB address (tcp://, ipc:// or inproc://).
    public var endpoint = "tcp://*:5557"
    /// `events.replay_endpoint`: the ROUTER address for replay requests (nil: none).
    public var replayEndpoint: String?
    /// `events.topic`: the topic frame of every message.
    public var topic = ""
    /// `events.buffer_steps`: batches kept for replay, 1...10^7.
    public var bufferSteps = 10_000
    /// `events.hwm`: the PUB socket's high-water mark in batches, 1...10^9.
    public var highWaterMark = 100_000
    /// `events.data_parallel_rank`: written into every batch (vLLM's `data_parallel_rank`), 0...65535.
    public var dataParallelRank = 0

    public init() {}

    static func isEndpoint(_ s: String) -> Bool {
        ["tcp://", "ipc://", "inproc://"].contains { s.hasPrefix($0) && s.count > $0.count }
    }

    public func validate() throws(KVConfigError) {
        try check(Self.isEndpoint(endpoint), Key.endpoint, "must be tcp://, ipc:// or inproc:// and an address, got '\(KVConfigError.excerpt(endpoint))'")
        if let replayEndpoint {
            try check(Self.isEndpoint(replayEndpoint), Key.replayEndpoint,
                      "must be tcp://, ipc:// or inproc:// and an address, got '\(KVConfigError.excerpt(replayEndpoint))'")
            try check(replayEndpoint != endpoint, Key.replayEndpoint, "must differ from \(Key.endpoint.name)")
        }
        try check((1...10_000_000).contains(bufferSteps), Key.bufferSteps, "must be in 1...10000000, got \(bufferSteps)")
        try check((1...1_000_000_000).contains(highWaterMark), Key.highWaterMark, "must be in 1...1000000000, got \(highWaterMark)")
        try check((0...65_535).contains(dataParallelRank), Key.dataParallelRank, "must be in 0...65535, got \(dataParallelRank)")
    }
}

/// Throws `invalidValue` for `key` unless `ok`.
@inline(__always)
func check(_ ok: Bool, _ key: Key, _ message: @autoclosure () -> String) throws(KVConfigError) {
    if !ok { throw .invalidValue(key: key.name, variable: key.variable, message: message()) }
}

extension KVSettings {
    /// Every key with its value as the file would spell it (nil: not set, for the optional ones), in
    /// `KVConfigKey.all`'s order: what `kvcache config` prints. O(keys).
    public var keyValues: [(key: KVConfigKey, value: String?)] {
        let p = cache.policyParameters
        let values: [KVConfigKey: String?] = [
            .blockTokens: "\(cache.blockTokens)", .capacityBlocks: "\(cache.capacityBlocks)", .namespace: cache.namespace,
            .prefixCaching: "\(cache.prefixCaching)", .recordEvents: "\(cache.recordEvents)", .policy: cache.policy.rawValue,
            .firstUseWeight: "\(p.firstUseWeight)", .protection: "\(p.protection)", .horizonFactor: "\(p.horizonFactor)",
            .secondsPerToken: "\(cache.recomputeCost?.secondsPerToken ?? 0)",
            .secondsPerPair: "\(cache.recomputeCost?.secondsPerContextPair ?? 0)",
            .layers: "\(layout.layers)", .kvHeads: "\(layout.kvHeads)", .headDim: "\(layout.headDim)",
            .dtypeBytes: "\(layout.dtypeBytes)",
            .hostBlocks: "\(tiers.hostBlocks)", .diskPath: tiers.diskPath, .diskBytes: "\(tiers.diskBytes)",
            .workers: "\(tiers.workers)", .layerGroups: "\(tiers.layerGroups)", .spillWatermark: "\(tiers.spillWatermark)",
            .numaNode: tiers.numaNode.map { "\($0)" }, .numaDevice: tiers.numaDevice,
            .lockHostMemory: "\(tiers.lockHostMemory)", .compress: "\(tiers.compress)", .writePolicy: tiers.writePolicyName,
            .eventsEnabled: "\(events.enabled)", .endpoint: events.endpoint, .replayEndpoint: events.replayEndpoint,
            .topic: events.topic, .bufferSteps: "\(events.bufferSteps)", .highWaterMark: "\(events.highWaterMark)",
            .dataParallelRank: "\(events.dataParallelRank)",
        ]
        return KVConfigKey.all.map { ($0, values[$0] ?? nil) }
    }
}
