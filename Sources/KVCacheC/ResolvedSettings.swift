import CKVCache
import KVCache
import KVPlan
import KVTiers

/// The settings libkvcache_config.so resolved (`kvcache_config_library_settings`), its strings copied:
/// the values that `KVSettings.cacheConfig` and `KVSettings.tierConfig()` build the pool's and the
/// tiers' configurations from, turned back into those configurations here. The configuration library
/// has validated them; what this library checks again (the policy's name, the dtype) fails as
/// `.configuration`. O(1).
struct ResolvedSettings {
    var c: kvcache_config_library_settings
    let namespace: String
    let policy: String
    let dtype: String?
    let numaDevice: String?
    let diskDirectory: String?

    init(_ c: kvcache_config_library_settings) {
        self.c = c
        func copy(_ s: UnsafeMutablePointer<CChar>?) -> String? { s.map { String(cString: $0) } }
        namespace = copy(c.key_namespace) ?? ""
        policy = copy(c.eviction_policy) ?? ""
        dtype = copy(c.dtype)
        numaDevice = copy(c.numa_device)
        diskDirectory = copy(c.disk_directory)
        self.c.key_namespace = nil
        self.c.eviction_policy = nil
        self.c.dtype = nil
        self.c.numa_device = nil
        self.c.disk_directory = nil
    }

    /// The pool's configuration.
    func cacheConfig() throws(CAPIError) -> KVCacheConfig {
        guard let kind = EvictionPolicyKind(rawValue: policy) else { throw .configuration("unknown policy \(policy)") }
        let cost = c.has_recompute_cost ? try lift { () throws(KVCacheError) in
            try RecomputeCost(secondsPerToken: c.recompute_seconds_per_token,
                              secondsPerContextPair: c.recompute_seconds_per_context_pair)
        } : nil
        var config = KVCacheConfig(blockTokens: Int(c.block_tokens), capacityBlocks: Int(c.capacity_blocks), namespace: namespace,
                                   enablePrefixCaching: c.enable_prefix_caching, policy: kind, recordEvents: c.record_events,
                                   recomputeCost: cost)
        config.policyParameters = EvictionPolicyKind.Parameters(firstUseWeight: c.first_use_weight, protection: c.protection,
                                                                horizonFactor: c.horizon_factor)
        return config
    }

    /// The tier manager's configuration (only when `has_tiers`).
    func tierConfig() throws(CAPIError) -> TierConfig {
        guard let dtype = dtype.flatMap(KVDType.init(rawValue:)) else { throw .configuration("unknown layout dtype") }
        let layout = try lift { () throws(KVCacheError) in
            try KVGeometry(layers: Int(c.layers), kvHeads: Int(c.kv_heads), headDim: Int(c.head_dim), dtype: dtype,
                           blockTokens: Int(c.block_tokens))
        }
        var disk = diskDirectory.map { DiskStoreConfig(directory: $0, capacityBytes: Int(c.disk_capacity_bytes), layout: layout) }
        disk?.compress = c.compress
        var config = TierConfig(layout: layout, hostBlocks: Int(c.host_blocks), disk: disk)
        switch c.numa_placement {
        case Int32(KVCACHE_CONFIG_NUMA_NODE.rawValue): config.hostPlacement = .node(Int(c.numa_node))
        case Int32(KVCACHE_CONFIG_NUMA_DEVICE.rawValue): config.hostPlacement = .nearDevice(pciAddress: numaDevice ?? "")
        default: config.hostPlacement = .local
        }
        config.lockHostMemory = c.lock_host_memory
        switch c.write_policy {
        case Int32(KVCACHE_CONFIG_WRITE_THROUGH.rawValue): config.writePolicy = .writeThrough
        case Int32(KVCACHE_CONFIG_WRITE_AFTER_HITS.rawValue): config.writePolicy = .writeAfterHits(Int(c.write_after_hits))
        default: config.writePolicy = .writeBack
        }
        config.layerGroups = Int(c.layer_groups)
        config.workers = Int(c.workers)
        config.spillWatermark = c.spill_watermark
        config.recordEvents = c.record_events
        return config
    }
}
