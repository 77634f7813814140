import CKVCache
import Glibc
import KVCache
import KVConfig
import KVPlan
import KVTiers

// libkvcache_config.so's half of the configuration calls (kvcache_config_library.h): reads KVCACHE_*
// variables and YAML files and hands libkvcache_c.so the resolved values as plain C fields. Not hot
// calls: each reads the environment (and the file) once.

/// kvcache_config_library_interface: the interface version this library implements. O(1).
@_cdecl("kvcache_config_library_interface")
public func kvcacheConfigLibraryInterfaceImpl() -> Int32 { Int32(KVCACHE_CONFIG_LIBRARY_INTERFACE) }

/// kvcache_config_library_load: the settings of the file at `path` (NULL: the environment's), resolved
/// into `settings`, or -1 and the sentence naming the bad key in `error`. O(file).
@_cdecl("kvcache_config_library_load")
public func kvcacheConfigLibraryLoadImpl(_ path: UnsafePointer<CChar>?,
                                         _ settings: UnsafeMutablePointer<kvcache_config_library_settings>?,
                                         _ error: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    guard let settings else { return -1 }
    return withSettings(path, error) { (s) throws(KVConfigError) in
        settings.pointee = try kvcache_config_library_settings(s)
    }
}

/// Loads the settings `path` names (nil: the environment's) and runs `body` on them; a failure of
/// either is -1 with its sentence in `sentence` (malloc'd). O(file) around `body`.
func withSettings(_ path: UnsafePointer<CChar>?, _ sentence: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?,
                  _ body: (KVSettings) throws(KVConfigError) -> Void) -> Int32 {
    do throws(KVConfigError) {
        let settings: KVSettings
        if let path {
            guard let file = String(validatingCString: path) else {
                sentence?.pointee = strdup("path is not UTF-8")
                return -1
            }
            settings = try KVSettingsLoader.load(file: file)
        } else {
            settings = try KVSettingsLoader.fromEnvironment()
        }
        try body(settings)
        return 0
    } catch {
        sentence?.pointee = strdup(error.description)
        return -1
    }
}

extension kvcache_config_library_settings {
    /// The flat values of `settings`: the pool as `KVSettings.cacheConfig` builds it (events recorded
    /// when `events.enabled`), the tiers as `tierConfig()` builds them. Strings are malloc'd (the
    /// receiver frees them). O(1).
    init(_ settings: KVSettings) throws(KVConfigError) {
        self.init()
        let cache = settings.cacheConfig
        block_tokens = Int64(cache.blockTokens)
        capacity_blocks = Int64(cache.capacityBlocks)
        key_namespace = strdup(cache.namespace)
        eviction_policy = strdup(cache.policy.rawValue)
        first_use_weight = cache.policyParameters.firstUseWeight
        protection = cache.policyParameters.protection
        horizon_factor = cache.policyParameters.horizonFactor
        if let cost = cache.recomputeCost {
            has_recompute_cost = true
            recompute_seconds_per_token = cost.secondsPerToken
            recompute_seconds_per_context_pair = cost.secondsPerContextPair
        }
        enable_prefix_caching = cache.enablePrefixCaching
        record_events = cache.recordEvents
        guard let tiers = try settings.tierConfig() else { return }
        has_tiers = true
        layers = Int64(tiers.layout.layers)
        kv_heads = Int64(tiers.layout.kvHeads)
        head_dim = Int64(tiers.layout.headDim)
        dtype = strdup(tiers.layout.dtype.rawValue)
        host_blocks = Int64(tiers.hostBlocks)
        switch tiers.hostPlacement {
        case .local: numa_placement = Int32(KVCACHE_CONFIG_NUMA_LOCAL.rawValue)
        case .node(let n):
            numa_placement = Int32(KVCACHE_CONFIG_NUMA_NODE.rawValue)
            numa_node = Int64(n)
        case .nearDevice(let address):
            numa_placement = Int32(KVCACHE_CONFIG_NUMA_DEVICE.rawValue)
            numa_device = strdup(address)
        }
        lock_host_memory = tiers.lockHostMemory
        if let disk = tiers.disk {
            disk_directory = strdup(disk.directory)
            disk_capacity_bytes = Int64(disk.capacityBytes)
            compress = disk.compress
        }
        switch tiers.writePolicy {
        case .writeBack: write_policy = Int32(KVCACHE_CONFIG_WRITE_BACK.rawValue)
        case .writeThrough: write_policy = Int32(KVCACHE_CONFIG_WRITE_THROUGH.rawValue)
        case .writeAfterHits(let n):
            write_policy = Int32(KVCACHE_CONFIG_WRITE_AFTER_HITS.rawValue)
            write_after_hits = Int64(n)
        }
        layer_groups = Int64(tiers.layerGroups)
        workers = Int64(tiers.workers)
        spill_watermark = tiers.spillWatermark
    }
}
