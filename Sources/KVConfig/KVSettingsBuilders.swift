import KVCache
import KVPlan
import KVTiers

/// What the settings build: the device pool's configuration and the tier manager's, from the one
/// YAML file and environment. (The event publisher's is KVEvents' `ZmqEventPublisher.Config(settings:)`,
/// so that this module does not link libzmq.)
extension KVSettings {
    /// The device pool's configuration: `cache.cacheConfig`, recording events also when `events.enabled`
    /// (a publisher drains them). O(1).
    public var cacheConfig: KVCacheConfig {
        var c = cache.cacheConfig
        c.recordEvents = cache.recordEvents || events.enabled
        return c
    }

    /// The tier manager's configuration (`KVTierManager(config:device:)`), or nil when no tier is
    /// configured: the `layout.*` geometry with `block_tokens`, host blocks and their NUMA placement and
    /// page-locking, the disk folder, size and codec, the write policy, layer groups, workers, spill
    /// watermark; events are kept when `record_events` or `events.enabled`. O(1).
    /// - Throws: `invalidValue` naming the `layout.*` key missing (only for settings that did not pass
    ///   `validate()`).
    public func tierConfig() throws(KVConfigError) -> TierConfig? {
        guard tiers.isConfigured else { return nil }
        let geometry = try layout.geometry(blockTokens: cache.blockTokens)
        var disk = tiers.diskPath.map { DiskStoreConfig(directory: $0, capacityBytes: tiers.diskBytes, layout: geometry) }
        disk?.compress = tiers.compress
        var c = TierConfig(layout: geometry, hostBlocks: tiers.hostBlocks, disk: disk)
        c.hostPlacement = tiers.placement
        c.lockHostMemory = tiers.lockHostMemory
        c.writePolicy = tiers.writePolicy
        c.layerGroups = tiers.layerGroups
        c.workers = tiers.workers
        c.spillWatermark = tiers.spillWatermark
        c.recordEvents = cache.recordEvents || events.enabled
        return c
    }
}
