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
    static let blockTokens = Key("block_tokens")
    static let capacityBlocks = Key("capacity_blocks")
    static let namespace = Key("namespace")
    static let prefixCaching = Key("prefix_caching")
    static let recordEvents = Key("record_events")
    static let policy = Key("policy")
    static let firstUseWeight = Key("first_use_weight")
    static let protection = Key("protection")
    static let horizonFactor = Key("horizon_factor")
    static let secondsPerToken = Key("recompute_seconds_per_token")
    static let secondsPerPair = Key("recompute_seconds_per_context_pair")

    static let hostBlocks = Key("tiers.host_blocks")
    static let diskPath = Key("tiers.disk_path")
    static let diskBytes = Key("tiers.disk_bytes")
    static let workers = Key("tiers.workers")
    static let layerGroups = Key("tiers.layer_groups")
    static let spillWatermark = Key("tiers.spill_watermark")

    static let eventsEnabled = Key("events.enabled")
    static let endpoint = Key("events.endpoint")
    static let replayEndpoint = Key("events.replay_endpoint")
    static let topic = Key("events.topic")
    static let bufferSteps = Key("events.buffer_steps")
    static let highWaterMark = Key("events.hwm")

    /// Every key, in the order of docs/CONFIGURATION.md.
    public static let all: [KVConfigKey] = [
        blockTokens, capacityBlocks, namespace, prefixCaching, recordEvents, policy, firstUseWeight, protection,
        horizonFactor, secondsPerToken, secondsPerPair,
        hostBlocks, diskPath, diskBytes, workers, layerGroups, spillWatermark,
        eventsEnabled, endpoint, replayEndpoint, topic, bufferSteps, highWaterMark,
    ]
}
