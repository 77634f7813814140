/// One configuration key: its dotted name in the YAML file (`tiers.host_blocks`, a mapping `tiers:`
/// holding `host_blocks:`) and its environment variable (`KVCACHE_TIERS_HOST_BLOCKS`: `KVCACHE_`, then
/// the name upper-cased with `.` as `_`, as swift-configuration's environment provider spells keys
/// under the `kvcache` prefix).
public struct KVConfigKey: Sendable, Hashable, CustomStringConvertible {
    /// The dotted name.
    public let name: String

    init(_ name: String) { self.name = name }

    /// The environment variable that sets it.
    public var variable: String {
        "KVCACHE_" + name.uppercased().map { $0.isLetter || $0.isNumber ? String($0) : "_" }.joined()
    }

    /// The name's components ("tiers", "host_blocks").
    var components: [String] { name.split(separator: ".").map(String.init) }

    public var description: String { name }
}

/// Every key `KVSettingsLoader` reads, by section, for errors, docs and the CLI's listing.
typealias Key = KVConfigKey

extension KVConfigKey {
    public static let blockTokens = KVConfigKey("block_tokens")
    public static let capacityBlocks = KVConfigKey("capacity_blocks")
    public static let namespace = KVConfigKey("namespace")
    public static let prefixCaching = KVConfigKey("prefix_caching")
    public static let recordEvents = KVConfigKey("record_events")
    public static let policy = KVConfigKey("policy")
    public static let firstUseWeight = KVConfigKey("first_use_weight")
    public static let protection = KVConfigKey("protection")
    public static let horizonFactor = KVConfigKey("horizon_factor")
    public static let secondsPerToken = KVConfigKey("recompute_seconds_per_token")
    public static let secondsPerPair = KVConfigKey("recompute_seconds_per_context_pair")

    public static let layers = KVConfigKey("layout.layers")
    public static let kvHeads = KVConfigKey("layout.kv_heads")
    public static let headDim = KVConfigKey("layout.head_dim")
    public static let dtypeBytes = KVConfigKey("layout.dtype_bytes")

    public static let hostBlocks = KVConfigKey("tiers.host_blocks")
    public static let diskPath = KVConfigKey("tiers.disk_path")
    public static let diskBytes = KVConfigKey("tiers.disk_bytes")
    public static let workers = KVConfigKey("tiers.workers")
    public static let layerGroups = KVConfigKey("tiers.layer_groups")
    public static let spillWatermark = KVConfigKey("tiers.spill_watermark")
    public static let numaNode = KVConfigKey("tiers.numa_node")
    public static let numaDevice = KVConfigKey("tiers.numa_device")
    public static let lockHostMemory = KVConfigKey("tiers.lock_host_memory")
    public static let compress = KVConfigKey("tiers.compress")
    public static let writePolicy = KVConfigKey("tiers.write_policy")

    public static let eventsEnabled = KVConfigKey("events.enabled")
    public static let endpoint = KVConfigKey("events.endpoint")
    public static let replayEndpoint = KVConfigKey("events.replay_endpoint")
    public static let topic = KVConfigKey("events.topic")
    public static let bufferSteps = KVConfigKey("events.buffer_steps")
    public static let highWaterMark = KVConfigKey("events.hwm")
    public static let dataParallelRank = KVConfigKey("events.data_parallel_rank")

    /// Every key, in the order of docs/CONFIGURATION.md.
    public static let all: [KVConfigKey] = [
        blockTokens, capacityBlocks, namespace, prefixCaching, recordEvents, policy, firstUseWeight, protection,
        horizonFactor, secondsPerToken, secondsPerPair,
        layers, kvHeads, headDim, dtypeBytes,
        hostBlocks, diskPath, diskBytes, workers, layerGroups, spillWatermark, numaNode, numaDevice, lockHostMemory,
        compress, writePolicy,
        eventsEnabled, endpoint, replayEndpoint, topic, bufferSteps, highWaterMark, dataParallelRank,
    ]
}
