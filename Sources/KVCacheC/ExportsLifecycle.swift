import CKVCache
import KVCache

// Statuses, last error, and opening and closing a cache (the versions: ExportsVersion.swift). Each
// `@_cdecl` function is the implementation of the declaration of the same C name in kvcache.h; the
// Swift names differ so that C callers (and the tests) link against the exported C symbols only.

/// kvcache_status_name: the status constant's name as static text. O(1).
@_cdecl("kvcache_status_name")
public func kvcacheStatusNameImpl(_ status: kvcache_status) -> UnsafePointer<CChar> {
    // A string literal's StaticString storage is a NUL-terminated C string in read-only data.
    UnsafeRawPointer(Status.name(status).utf8Start).assumingMemoryBound(to: CChar.self)
}

/// kvcache_last_error: the calling thread's last failure in words. O(message length).
@_cdecl("kvcache_last_error")
public func kvcacheLastErrorImpl() -> UnsafePointer<CChar> {
    LastError.text()
}

/// kvcache_config_init: the defaults of `KVCacheConfig`, capacity left to the caller. O(1).
@_cdecl("kvcache_config_init")
public func kvcacheConfigInitImpl(_ config: UnsafeMutablePointer<kvcache_config>?) -> kvcache_status {
    guard let config else { return fail(.nullPointer("config"), "kvcache_config_init") }
    let defaults = KVCacheConfig(capacityBlocks: 0)
    config.pointee = kvcache_config(
        block_tokens: Int64(defaults.blockTokens), capacity_blocks: 0, key_namespace: nil,
        eviction_policy: EvictionPolicyCode.code(of: defaults.policy),
        enable_prefix_caching: defaults.enablePrefixCaching, record_events: defaults.recordEvents,
        recompute_seconds_per_token: 0, recompute_seconds_per_context_pair: 0)   // 0 and 0: not given
    return Status.ok
}

/// kvcache_create: validates the config, builds the manager and hands out one retained reference
/// as the opaque handle. O(capacity).
@_cdecl("kvcache_create")
public func kvcacheCreateImpl(_ config: UnsafePointer<kvcache_config>?,
                              _ out: UnsafeMutablePointer<OpaquePointer?>?) -> kvcache_status {
    create(config, out, "kvcache_create")
}

/// Both creation entry points once the ABI is settled; failures are reported as `function`.
private func create(_ config: UnsafePointer<kvcache_config>?, _ out: UnsafeMutablePointer<OpaquePointer?>?,
                    _ function: StaticString) -> kvcache_status {
    do throws(CAPIError) {
        let c = try required(config, "config").pointee
        let out = try required(out, "out")
        guard let policy = EvictionPolicyCode.kind(of: c.eviction_policy) else {
            throw .invalidArgument("config.eviction_policy is not a kvcache_eviction_policy")
        }
        let namespace = try utf8String(c.key_namespace, "config.key_namespace")
        let given = c.recompute_seconds_per_token != 0 || c.recompute_seconds_per_context_pair != 0
        let cost = given ? try lift { () throws(KVCacheError) in
            try RecomputeCost(secondsPerToken: c.recompute_seconds_per_token,
                              secondsPerContextPair: c.recompute_seconds_per_context_pair)
        } : nil
        let config = KVCacheConfig(
            blockTokens: Int(c.block_tokens), capacityBlocks: Int(c.capacity_blocks),
            namespace: namespace, enablePrefixCaching: c.enable_prefix_caching, policy: policy,
            recordEvents: c.record_events, recomputeCost: cost)
        out.pointee = try open(config)
        return Status.ok
    } catch {
        return fail(error, function)
    }
}

/// A new handle over a manager of `config`, after checking that its index and its policy's state fit
/// in memory. O(capacity).
func open(_ config: KVCacheConfig) throws(CAPIError) -> OpaquePointer {
    if (1 ... Int(Int32.max)).contains(config.capacityBlocks),
       MemoryLimit.checkedBytes(count: config.capacityBlocks,
                                bytesEach: Int(KVCACHE_INDEX_BYTES_PER_BLOCK) + EvictionPolicyCode.stateBytes(of: config.policy)) == nil {
        throw .outOfMemory(blocks: config.capacityBlocks, limitBytes: MemoryLimit.usableBytes)
    }
    let manager = try lift { () throws(KVCacheError) in try KVCacheManager(config) }
    return OpaquePointer(Unmanaged.passRetained(CacheHandle(manager)).toOpaque())
}

/// kvcache_create_checked: kvcache_create once the caller's ABI version and config size are this
/// library's; a mismatch allocates nothing. O(capacity).
@_cdecl("kvcache_create_checked")
public func kvcacheCreateCheckedImpl(_ abiVersion: UInt32, _ configSize: Int,
                                     _ config: UnsafePointer<kvcache_config>?,
                                     _ out: UnsafeMutablePointer<OpaquePointer?>?) -> kvcache_status {
    let function: StaticString = "kvcache_create_checked"
    guard abiVersion == LibraryVersion.abi else {
        return fail(.invalidArgument("abi_version is not kvcache_abi_version(): compiled against another kvcache.h"),
                    function)
    }
    guard configSize == MemoryLayout<kvcache_config>.size else {
        return fail(.invalidArgument("config_size is not sizeof(kvcache_config): compiled against another kvcache.h"),
                    function)
    }
    return create(config, out, function)
}

/// kvcache_destroy: drops the handle's reference; the manager and its arrays go with it.
/// O(capacity).
@_cdecl("kvcache_destroy")
public func kvcacheDestroyImpl(_ cache: OpaquePointer?) -> kvcache_status {
    guard let cache else { return fail(.nullHandle, "kvcache_destroy") }
    guard isHandle(cache, of: CacheHandle.self) else { return fail(.wrongHandle, "kvcache_destroy") }
    Unmanaged<CacheHandle>.fromOpaque(UnsafeRawPointer(cache)).release()
    return Status.ok
}

/// The header's `enum kvcache_eviction_policy` values and the facade's policies.
enum EvictionPolicyCode {
    static func code(of kind: EvictionPolicyKind) -> Int32 {
        let c = switch kind {
        case .lru: KVCACHE_EVICTION_LRU
        case .fifo: KVCACHE_EVICTION_FIFO
        case .lfu: KVCACHE_EVICTION_LFU
        case .pgdsf: KVCACHE_EVICTION_PGDSF
        case .probation: KVCACHE_EVICTION_PROBATION
        case .pgdsfProbation: KVCACHE_EVICTION_PGDSF_PROBATION
        case .marking: KVCACHE_EVICTION_MARKING
        }
        return Int32(truncatingIfNeeded: c.rawValue)
    }

    /// Bytes per block of the policy's own state beyond KVCACHE_INDEX_BYTES_PER_BLOCK (kvcache.h).
    static func stateBytes(of kind: EvictionPolicyKind) -> Int {
        switch kind {
        case .lru, .fifo, .lfu, .pgdsf: 0
        case .probation, .pgdsfProbation: Int(KVCACHE_POLICY_SKETCH_BYTES_PER_BLOCK)
        case .marking: Int(KVCACHE_POLICY_SKETCH_BYTES_PER_BLOCK) + Int(KVCACHE_POLICY_PREDICTOR_BYTES_PER_BLOCK)
        }
    }

    /// nil for a value that names no policy.
    static func kind(of code: Int32) -> EvictionPolicyKind? {
        EvictionPolicyKind.allCases.first { Self.code(of: $0) == code }
    }
}
