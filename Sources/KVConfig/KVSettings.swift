import KVCache

/// The embedded library's settings: the device pool and its eviction policy, the tiers below it and
/// the KV-event endpoints, as one typed value.
///
/// Contract: a value built by `KVSettingsLoader` has passed `validate()`, so every field is within
/// its documented range and the sections agree with each other; building a cache from it
/// (`cache.makeManager()`) then fails only for lack of memory. Keys are those of the YAML file
/// (docs/CONFIGURATION.md), `KVCACHE_` + the key upper-cased with `.` as `_` for the environment.
public struct KVSettings: Sendable, Equatable {
    public var cache: CacheSettings
    public var tiers = TierSettings()
    public var events = EventSettings()

    public init(cache: CacheSettings, tiers: TierSettings = TierSettings(), events: EventSettings = EventSettings()) {
        self.cache = cache
        self.tiers = tiers
        self.events = events
    }

    /// Checks every section. O(1).
    /// - Throws: `KVConfigError.invalidValue` naming the first key out of range.
    public func validate() throws(KVConfigError) {
        try cache.validate()
        try tiers.validate()
        try events.validate()
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

    public init() {}

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
            .hostBlocks: "\(tiers.hostBlocks)", .diskPath: tiers.diskPath, .diskBytes: "\(tiers.diskBytes)",
            .workers: "\(tiers.workers)", .layerGroups: "\(tiers.layerGroups)", .spillWatermark: "\(tiers.spillWatermark)",
            .eventsEnabled: "\(events.enabled)", .endpoint: events.endpoint, .replayEndpoint: events.replayEndpoint,
            .topic: events.topic, .bufferSteps: "\(events.bufferSteps)", .highWaterMark: "\(events.highWaterMark)",
        ]
        return KVConfigKey.all.map { ($0, values[$0] ?? nil) }
    }
}
