import CKVCache
import KVCache
import KVPlan
import KVTiers

// The tier manager through the C ABI (the "Tiers" section of kvcache.h): each `@_cdecl` function is
// the implementation of the declaration of the same C name, over `KVTierManager`'s own verbs. Every
// argument is checked before the manager is called, so a refused call has changed nothing.

/// kvcache_tiers_config_init: the defaults of `TierConfig` that the header names. O(1).
@_cdecl("kvcache_tiers_config_init")
public func kvcacheTiersConfigInitImpl(_ config: UnsafeMutablePointer<kvcache_tiers_config>?) -> kvcache_status {
    guard let config else { return fail(.nullPointer("config"), "kvcache_tiers_config_init") }
    config.pointee = kvcache_tiers_config(
        layers: 0, kv_heads: 0, head_dim: 0, dtype_bytes: 0, block_tokens: 0, device_blocks: 0, host_blocks: 0,
        disk_directory: nil, disk_capacity_bytes: 0, layer_groups: 1, workers: 2, spill_watermark: 0.9,
        record_events: false, lock_host_memory: false, synchronous_eviction_copies: false, device_to_host: nil, host_to_device: nil, copy_context: nil)
    return Status.ok
}

/// kvcache_tiers_create_checked: validates the config, opens the manager over the caller's copies (or
/// the stand-in device pool) and hands out one retained reference. O(device + host blocks).
@_cdecl("kvcache_tiers_create_checked")
public func kvcacheTiersCreateCheckedImpl(_ abiVersion: UInt32, _ configSize: Int,
                                          _ config: UnsafePointer<kvcache_tiers_config>?,
                                          _ out: UnsafeMutablePointer<OpaquePointer?>?) -> kvcache_status {
    let function: StaticString = "kvcache_tiers_create_checked"
    do throws(CAPIError) {
        let (c, _, tc) = try tierConfig(abiVersion, configSize, config)
        let out = try required(out, "out")
        out.pointee = try openTiers(tc, deviceBlocks: Int(c.device_blocks), toHost: c.device_to_host, toDevice: c.host_to_device,
                                    context: c.copy_context)
        return Status.ok
    } catch {
        return fail(error, function)
    }
}

/// The device memory of `deviceBlocks` blocks for tier settings `tc`: the engine's copy callbacks behind a
/// `ServerCopyBackend` (copies handed out by token, completed by `..._copy_done`) when both are given, or
/// without callbacks the library's `HostDeviceMemory` stand-in. O(device blocks).
func tierDevice(_ tc: TierConfig, deviceBlocks: Int, toHost: kvcache_tier_copy_fn?, toDevice: kvcache_tier_copy_fn?,
                context: UnsafeMutableRawPointer?) throws(CAPIError)
    -> (device: any DeviceMemory, standIn: HostDeviceMemory?, copies: PendingCopies) {
    guard (toHost == nil) == (toDevice == nil) else { throw .invalidArgument("config: set both copy callbacks or neither") }
    // Pending copies at once: each moves one layer group of a device block to or from a host slot.
    let copies = PendingCopies(expected: min(deviceBlocks, max(tc.hostBlocks, 1)) * tc.layerGroups)
    if let toHost, let toDevice {
        let callbacks = CopyCallbacks(toHost: toHost, toDevice: toDevice, context: context)
        return (ServerCopyBackend(layout: tc.layout, capacityBlocks: deviceBlocks) { callbacks.submit($0, copies) }, nil, copies)
    }
    let memory = try liftTier { () throws(TierError) in try HostDeviceMemory(layout: tc.layout, capacityBlocks: deviceBlocks) }
    return (memory, memory, copies)
}

/// Opens a tier manager of configuration `tc` over `tierDevice`'s memory for `deviceBlocks` device blocks
/// and returns one retained reference to its handle. O(device + host blocks).
func openTiers(_ tc: TierConfig, deviceBlocks: Int, toHost: kvcache_tier_copy_fn?, toDevice: kvcache_tier_copy_fn?,
               context: UnsafeMutableRawPointer?) throws(CAPIError) -> OpaquePointer {
    let (device, standIn, copies) = try tierDevice(tc, deviceBlocks: deviceBlocks, toHost: toHost, toDevice: toDevice, context: context)
    let manager = try liftTier { () throws(TierError) in try KVTierManager(config: tc, device: device) }
    let handle = TierHandle(manager: manager, standIn: standIn, copies: copies)
    return OpaquePointer(Unmanaged.passRetained(handle).toOpaque())
}

/// The caller's `kvcache_tiers_config` (compiled against this library's header), its geometry and the
/// tier manager's settings, validated (every field but the copy callbacks). O(1).
func tierConfig(_ abiVersion: UInt32, _ configSize: Int,
                _ config: UnsafePointer<kvcache_tiers_config>?) throws(CAPIError) -> (kvcache_tiers_config, KVGeometry, TierConfig) {
    guard abiVersion == LibraryVersion.abi, configSize == MemoryLayout<kvcache_tiers_config>.size else {
        throw .invalidArgument("abi_version or config_size: compiled against another kvcache.h")
    }
    let c = try required(config, "config").pointee
    let dtype: KVDType
    switch c.dtype_bytes {
    case 1: dtype = .fp8
    case 2: dtype = .fp16
    case 4: dtype = .fp32
    default: throw .invalidArgument("config.dtype_bytes is not 1, 2 or 4")
    }
    let limit = Int64(Int32.max)
    guard [c.layers, c.kv_heads, c.head_dim, c.block_tokens].allSatisfy({ (1 ... limit).contains($0) }),
          (1 ... limit).contains(c.device_blocks), (0 ... limit).contains(c.host_blocks),
          (1 ... 64).contains(c.layer_groups), c.layer_groups <= c.layers, (1 ... 64).contains(c.workers),
          c.spill_watermark > 0, c.spill_watermark <= 1, c.disk_capacity_bytes >= 0 else {
        throw .invalidArgument("config: a size, count or the spill watermark is out of range")
    }
    let directory = c.disk_directory == nil ? nil : try utf8String(c.disk_directory, "config.disk_directory")
    let layout = try lift { () throws(KVCacheError) in
        try KVGeometry(layers: Int(c.layers), kvHeads: Int(c.kv_heads), headDim: Int(c.head_dim), dtype: dtype,
                       blockTokens: Int(c.block_tokens))
    }
    var tc = TierConfig(layout: layout, hostBlocks: Int(c.host_blocks),
                        disk: directory.map { DiskStoreConfig(directory: $0, capacityBytes: Int(c.disk_capacity_bytes),
                                                              layout: layout) })
    tc.layerGroups = Int(c.layer_groups)
    tc.workers = Int(c.workers)
    tc.spillWatermark = c.spill_watermark
    tc.recordEvents = c.record_events
    tc.lockHostMemory = c.lock_host_memory
    tc.synchronousEvictionCopies = c.synchronous_eviction_copies
    tc.calibrateAtStart = false   // no recompute cost: every tier with a row is loaded from
    return (c, layout, tc)
}

/// kvcache_tiers_destroy: drops the handle's reference; the manager finishes its transfers and closes.
@_cdecl("kvcache_tiers_destroy")
public func kvcacheTiersDestroyImpl(_ tiers: OpaquePointer?) -> kvcache_status {
    guard let tiers else { return fail(.nullHandle, "kvcache_tiers_destroy") }
    guard isHandle(tiers, of: TierHandle.self) else { return fail(.wrongHandle, "kvcache_tiers_destroy") }
    Unmanaged<TierHandle>.fromOpaque(UnsafeRawPointer(tiers)).release()
    return Status.ok
}

/// kvcache_tiers_lookup: `KVTierManager.lookup`, the plan's tiers into the caller's buffer. O(keys).
@_cdecl("kvcache_tiers_lookup")
public func kvcacheTiersLookupImpl(_ tiers: OpaquePointer?, _ keys: UnsafePointer<kvcache_key>?, _ nKeys: Int,
                                   _ deviceBlocks: Int64, _ maxBlocks: Int64, _ locations: UnsafeMutablePointer<Int32>?,
                                   _ capacity: Int, _ out: UnsafeMutablePointer<kvcache_tier_lookup>?) -> kvcache_status {
    withTiers(tiers, "kvcache_tiers_lookup") { (h) throws(CAPIError) in
        let out = try required(out, "out")
        let keys = try inputBuffer(keys, nKeys, "keys")
        let locations = try outputBuffer(locations, capacity: capacity, "locations")
        guard deviceBlocks >= 0, maxBlocks >= 0, deviceBlocks <= Int64(keys.count) else {
            throw .invalidArgument("device_blocks or max_blocks is negative, or device_blocks > n_keys")
        }
        let most = max(0, min(keys.count, Int(clamping: maxBlocks)) - Int(deviceBlocks))
        if locations != nil { try requireRoom(most, capacity: capacity, "locations") }
        h.loadKeys(keys)
        h.manager.lookup(keys: h.keys, deviceBlocks: Int(deviceBlocks), maxBlocks: Int(clamping: maxBlocks), into: &h.plan)
        let plan = h.plan
        if let locations {
            for i in plan.locations.indices { locations[i] = Int32(plan.locations[i].rawValue) }
        }
        out.pointee = kvcache_tier_lookup(device_blocks: Int64(plan.deviceBlocks), host_blocks: Int64(plan.hostBlocks),
                                          disk_blocks: Int64(plan.diskBlocks), load_blocks: Int64(plan.loadBlocks))
    }
}

/// kvcache_tiers_loadable: `KVTierManager.loadableTier(of:)`, -1 for none. O(1).
@_cdecl("kvcache_tiers_loadable")
public func kvcacheTiersLoadableImpl(_ tiers: OpaquePointer?, _ key: kvcache_key,
                                     _ tier: UnsafeMutablePointer<Int32>?) -> kvcache_status {
    withTiers(tiers, "kvcache_tiers_loadable") { (h) throws(CAPIError) in
        let tier = try required(tier, "tier")
        tier.pointee = h.manager.loadableTier(of: BlockKey(lo: key.lo, hi: key.hi)).map { Int32($0.rawValue) } ?? -1
    }
}

/// kvcache_tiers_prepare_load: `KVTierManager.load` of keys[first...] into `dst`. O(blocks).
@_cdecl("kvcache_tiers_prepare_load")
public func kvcacheTiersPrepareLoadImpl(_ tiers: OpaquePointer?, _ keys: UnsafePointer<kvcache_key>?, _ nKeys: Int,
                                        _ first: Int, _ dst: UnsafePointer<Int32>?, _ nBlocks: Int,
                                        _ loadID: UnsafeMutablePointer<UInt64>?) -> kvcache_status {
    withTiers(tiers, "kvcache_tiers_prepare_load") { (h) throws(CAPIError) in
        let loadID = try required(loadID, "load_id")
        let keys = try inputBuffer(keys, nKeys, "keys")
        let dst = try inputBuffer(dst, nBlocks, "dst")
        guard first >= 0, first <= keys.count, dst.count <= keys.count - first else {
            throw .invalidArgument("first + n_blocks is more than n_keys")
        }
        h.loadKeys(keys)
        h.blocks.removeAll(keepingCapacity: true)
        h.blocks.append(contentsOf: dst)
        let transfer = try liftTier { () throws(TierError) in
            try h.manager.load(keys: h.keys, first: first, into: h.blocks)
        }
        loadID.pointee = h.register(transfer)
    }
}

/// kvcache_tiers_is_complete. O(1).
@_cdecl("kvcache_tiers_is_complete")
public func kvcacheTiersIsCompleteImpl(_ tiers: OpaquePointer?, _ id: UInt64,
                                       _ complete: UnsafeMutablePointer<Bool>?) -> kvcache_status {
    withTiers(tiers, "kvcache_tiers_is_complete") { (h) throws(CAPIError) in
        let complete = try required(complete, "complete")
        complete.pointee = try h.transfer(id).isComplete
    }
}

/// kvcache_tiers_failed_blocks: a snapshot of the failed blocks, without waiting. O(blocks).
@_cdecl("kvcache_tiers_failed_blocks")
public func kvcacheTiersFailedBlocksImpl(_ tiers: OpaquePointer?, _ id: UInt64, _ failed: UnsafeMutablePointer<UInt8>?,
                                         _ capacity: Int, _ count: UnsafeMutablePointer<Int>?) -> kvcache_status {
    withTiers(tiers, "kvcache_tiers_failed_blocks") { (h) throws(CAPIError) in
        let count = try required(count, "count")
        let t = try h.transfer(id)
        let out = try outputBuffer(failed, capacity: capacity, "failed")
        let n = t.blocks
        count.pointee = n
        guard let out else { return }
        try requireRoom(n, capacity: capacity, "failed")
        t.writeOutcome(into: out, okValue: 0)
    }
}

/// kvcache_tiers_complete_load: waits, reports per block, forgets the load. O(blocks).
@_cdecl("kvcache_tiers_complete_load")
public func kvcacheTiersCompleteLoadImpl(_ tiers: OpaquePointer?, _ loadID: UInt64, _ blockOK: UnsafeMutablePointer<UInt8>?,
                                         _ capacity: Int, _ loadedPrefix: UnsafeMutablePointer<Int>?) -> kvcache_status {
    withTiers(tiers, "kvcache_tiers_complete_load") { (h) throws(CAPIError) in
        let loadedPrefix = try required(loadedPrefix, "loaded_prefix")
        let t = try h.finish(loadID, blockOK, capacity)
        loadedPrefix.pointee = t.loadedPrefixBlocks
    }
}

/// kvcache_tiers_prepare_store: `KVTierManager.store`. O(n).
@_cdecl("kvcache_tiers_prepare_store")
public func kvcacheTiersPrepareStoreImpl(_ tiers: OpaquePointer?, _ blocks: UnsafePointer<Int32>?,
                                         _ keys: UnsafePointer<kvcache_key>?, _ n: Int,
                                         _ firstParent: UnsafePointer<kvcache_key>?,
                                         _ storeID: UnsafeMutablePointer<UInt64>?) -> kvcache_status {
    withTiers(tiers, "kvcache_tiers_prepare_store") { (h) throws(CAPIError) in
        let storeID = try required(storeID, "store_id")
        let blocks = try inputBuffer(blocks, n, "blocks")
        let keys = try inputBuffer(keys, n, "keys")
        h.loadKeys(keys)
        h.blocks.removeAll(keepingCapacity: true)
        h.blocks.append(contentsOf: blocks)
        let parent = firstParent.map { BlockKey(lo: $0.pointee.lo, hi: $0.pointee.hi) }
        let transfer = try liftTier { () throws(TierError) in
            try h.manager.store(blocks: h.blocks, keys: h.keys, firstParent: parent)
        }
        storeID.pointee = h.register(transfer)
    }
}

/// kvcache_tiers_complete_store: waits, reports per block, forgets the store. O(n).
@_cdecl("kvcache_tiers_complete_store")
public func kvcacheTiersCompleteStoreImpl(_ tiers: OpaquePointer?, _ storeID: UInt64, _ blockOK: UnsafeMutablePointer<UInt8>?,
                                          _ capacity: Int, _ stored: UnsafeMutablePointer<Int>?) -> kvcache_status {
    withTiers(tiers, "kvcache_tiers_complete_store") { (h) throws(CAPIError) in
        let stored = try required(stored, "stored")
        let t = try h.finish(storeID, blockOK, capacity)
        stored.pointee = t.blocks - t.failedCount
    }
}

/// kvcache_tiers_copy_done: completes a copy handed to the engine. Any thread. O(1).
@_cdecl("kvcache_tiers_copy_done")
public func kvcacheTiersCopyDoneImpl(_ tiers: OpaquePointer?, _ token: UInt64, _ ok: Bool) -> kvcache_status {
    guard let tiers else { return fail(.nullHandle, "kvcache_tiers_copy_done") }
    guard isHandle(tiers, of: TierHandle.self) else { return fail(.wrongHandle, "kvcache_tiers_copy_done") }
    // Only the thread-safe part of the handle is read: the pending copies.
    let copies = Unmanaged<TierHandle>.fromOpaque(UnsafeRawPointer(tiers))._withUnsafeGuaranteedRef { $0.copies }
    guard copies.complete(token, ok: ok) else {
        return fail(.invalidArgument("the token is not a pending copy"), "kvcache_tiers_copy_done")
    }
    return Status.ok
}

/// kvcache_tiers_prefetch: `KVTierManager.promote(keys:)`. O(n).
@_cdecl("kvcache_tiers_prefetch")
public func kvcacheTiersPrefetchImpl(_ tiers: OpaquePointer?, _ keys: UnsafePointer<kvcache_key>?, _ n: Int,
                                     _ pending: UnsafeMutablePointer<Int>?) -> kvcache_status {
    countKeys(tiers, "kvcache_tiers_prefetch", keys, n, pending) { $0.promote(keys: $1) }
}

/// kvcache_tiers_touch. O(n).
@_cdecl("kvcache_tiers_touch")
public func kvcacheTiersTouchImpl(_ tiers: OpaquePointer?, _ keys: UnsafePointer<kvcache_key>?, _ n: Int,
                                  _ found: UnsafeMutablePointer<Int>?) -> kvcache_status {
    countKeys(tiers, "kvcache_tiers_touch", keys, n, found) { $0.touch(keys: $1) }
}

/// A tier call over keys[0 ..< n] that counts some of them into `count` (which may be NULL). O(n) plus
/// the verb's own cost; no allocation (the keys go through the handle's buffer).
@inline(__always)
private func countKeys(_ tiers: OpaquePointer?, _ function: StaticString, _ keys: UnsafePointer<kvcache_key>?, _ n: Int,
                       _ count: UnsafeMutablePointer<Int>?, _ verb: (KVTierManager, [BlockKey]) -> Int) -> kvcache_status {
    withTiers(tiers, function) { (h) throws(CAPIError) in
        let keys = try inputBuffer(keys, n, "keys")
        h.loadKeys(keys)
        let c = verb(h.manager, h.keys)
        count?.pointee = c
    }
}

/// kvcache_tiers_will_evict: `KVTierManager.willEvict(block:key:)`. O(1).
@_cdecl("kvcache_tiers_will_evict")
public func kvcacheTiersWillEvictImpl(_ tiers: OpaquePointer?, _ block: Int32, _ key: kvcache_key) -> kvcache_status {
    withTiers(tiers, "kvcache_tiers_will_evict") { (h) throws(CAPIError) in
        guard block >= 0, Int(block) < h.manager.device.capacityBlocks else {
            throw .invalidArgument("block is outside the device pool")
        }
        h.manager.willEvict(block: block, key: BlockKey(lo: key.lo, hi: key.hi))
    }
}

/// kvcache_tiers_disk_put: `KVTierManager.putToStore`. O(length).
@_cdecl("kvcache_tiers_disk_put")
public func kvcacheTiersDiskPutImpl(_ tiers: OpaquePointer?, _ key: kvcache_key, _ parent: UnsafePointer<kvcache_key>?,
                                    _ bytes: UnsafeRawPointer?, _ length: Int,
                                    _ stored: UnsafeMutablePointer<Bool>?) -> kvcache_status {
    withTiers(tiers, "kvcache_tiers_disk_put") { (h) throws(CAPIError) in
        let stored = try required(stored, "stored")
        guard let bytes else { throw .nullPointer("bytes") }
        guard length >= 0 else { throw .invalidArgument("length is larger than the address space") }
        let p = parent.map { BlockKey(lo: $0.pointee.lo, hi: $0.pointee.hi) }
        stored.pointee = try liftTier { () throws(TierError) in
            try h.manager.putToStore(BlockKey(lo: key.lo, hi: key.hi), parent: p,
                                     bytes: UnsafeRawBufferPointer(start: bytes, count: length))
        }
    }
}

/// kvcache_tiers_disk_get: `KVTierManager.readFromStore`. O(length).
@_cdecl("kvcache_tiers_disk_get")
public func kvcacheTiersDiskGetImpl(_ tiers: OpaquePointer?, _ key: kvcache_key, _ bytes: UnsafeMutableRawPointer?,
                                    _ length: Int, _ hit: UnsafeMutablePointer<Bool>?) -> kvcache_status {
    withTiers(tiers, "kvcache_tiers_disk_get") { (h) throws(CAPIError) in
        let hit = try required(hit, "hit")
        guard let bytes else { throw .nullPointer("bytes") }
        guard length >= 0 else { throw .invalidArgument("length is larger than the address space") }
        hit.pointee = try liftTier { () throws(TierError) in
            try h.manager.readFromStore(BlockKey(lo: key.lo, hi: key.hi),
                                        into: UnsafeMutableRawBufferPointer(start: bytes, count: length))
        }
    }
}

/// kvcache_tiers_disk_contains: the store's leading run. O(matched).
@_cdecl("kvcache_tiers_disk_contains")
public func kvcacheTiersDiskContainsImpl(_ tiers: OpaquePointer?, _ keys: UnsafePointer<kvcache_key>?, _ n: Int,
                                         _ leading: UnsafeMutablePointer<Int>?) -> kvcache_status {
    withTiers(tiers, "kvcache_tiers_disk_contains") { (h) throws(CAPIError) in
        let leading = try required(leading, "leading")
        let keys = try inputBuffer(keys, n, "keys")
        guard let store = h.manager.store else { throw .invalidArgument("the tier manager has no disk tier") }
        var count = 0
        for k in keys {
            guard store.contains(BlockKey(lo: k.lo, hi: k.hi)) else { break }
            count += 1
        }
        leading.pointee = count
    }
}

/// kvcache_tiers_take_events: as kvcache_drain_events. O(events + keys).
@_cdecl("kvcache_tiers_take_events")
public func kvcacheTiersTakeEventsImpl(_ tiers: OpaquePointer?,
                                       _ events: UnsafeMutablePointer<kvcache_event>?, _ eventsCapacity: Int,
                                       _ eventCount: UnsafeMutablePointer<Int>?,
                                       _ keys: UnsafeMutablePointer<kvcache_key>?, _ keysCapacity: Int,
                                       _ keyCount: UnsafeMutablePointer<Int>?) -> kvcache_status {
    withTiers(tiers, "kvcache_tiers_take_events") { (h) throws(CAPIError) in
        // As handOverEvents, over the manager's flat events (one key each): no allocation.
        let eventCount = try required(eventCount, "event_count")
        let keyCount = try required(keyCount, "key_count")
        let eventsOut = try outputBuffer(events, capacity: eventsCapacity, "events")
        let keysOut = try outputBuffer(keys, capacity: keysCapacity, "keys")
        h.manager.drainEvents(into: &h.stagedEvents)
        let n = h.stagedEvents.count
        eventCount.pointee = n
        keyCount.pointee = n
        try requireRoom(n, capacity: eventsCapacity, "events")
        try requireRoom(n, capacity: keysCapacity, "keys")
        let blockTokens = Int64(h.manager.layout.blockTokens)
        for (i, e) in h.stagedEvents.enumerated() {
            eventsOut![i] = kvcache_event(e, blockTokens: blockTokens, firstKey: i)  // non-nil: capacity >= n > i
            keysOut![i] = kvcache_key(lo: e.key.lo, hi: e.key.hi)
        }
        h.stagedEvents.removeAll(keepingCapacity: true)
    }
}

/// kvcache_tiers_get_stats. O(1).
@_cdecl("kvcache_tiers_get_stats")
public func kvcacheTiersGetStatsImpl(_ tiers: OpaquePointer?, _ out: UnsafeMutablePointer<kvcache_tier_stats>?) -> kvcache_status {
    withTiers(tiers, "kvcache_tiers_get_stats") { (h) throws(CAPIError) in
        let out = try required(out, "out")
        let s = h.manager.statistics
        out.pointee = kvcache_tier_stats(block_bytes: Int64(h.manager.layout.bytesPerBlock), device: .init(s.device),
                                         host: .init(s.host), disk: .init(s.disk))
    }
}

/// kvcache_tiers_device_block: the stand-in pool's bytes of one block. O(1).
@_cdecl("kvcache_tiers_device_block")
public func kvcacheTiersDeviceBlockImpl(_ tiers: OpaquePointer?, _ block: Int32,
                                        _ data: UnsafeMutablePointer<UnsafeMutableRawPointer?>?,
                                        _ length: UnsafeMutablePointer<Int>?) -> kvcache_status {
    withTiers(tiers, "kvcache_tiers_device_block") { (h) throws(CAPIError) in
        let data = try required(data, "data")
        let length = try required(length, "length")
        guard let memory = h.standIn else { throw .invalidArgument("the engine's copy callbacks own the device pool") }
        guard let bytes = memory.withBlock(block, { $0 }) else { throw .invalidArgument("block is outside the device pool") }
        data.pointee = bytes.baseAddress
        length.pointee = bytes.count
    }
}

/// kvcache_tiers_host_region: the host pool's memfd, its mapping here and its size. O(1).
@_cdecl("kvcache_tiers_host_region")
public func kvcacheTiersHostRegionImpl(_ tiers: OpaquePointer?, _ fd: UnsafeMutablePointer<Int32>?,
                                       _ base: UnsafeMutablePointer<UnsafeMutableRawPointer?>?,
                                       _ size: UnsafeMutablePointer<Int>?) -> kvcache_status {
    withTiers(tiers, "kvcache_tiers_host_region") { (h) throws(CAPIError) in
        let fd = try required(fd, "fd")
        let base = try required(base, "base")
        let size = try required(size, "size")
        guard let host = h.manager.host else { throw .invalidArgument("the tier manager has no host tier") }
        fd.pointee = host.sharedFD
        base.pointee = host.region.baseAddress
        size.pointee = host.region.count
    }
}

/// kvcache_tiers_validate. O(entries + slots).
@_cdecl("kvcache_tiers_validate")
public func kvcacheTiersValidateImpl(_ tiers: OpaquePointer?) -> kvcache_status {
    withTiers(tiers, "kvcache_tiers_validate") { (h) throws(CAPIError) in
        do throws(InvariantViolation) { try h.manager.validate() } catch { throw .invariantViolation(error.description) }
    }
}

extension TierHandle {
    /// Keeps a load or store under a new id.
    func register(_ transfer: TransferHandle) -> UInt64 {
        let id = nextTransferID
        nextTransferID += 1
        transfers[id] = transfer
        return id
    }

    /// The load or store `id`.
    func transfer(_ id: UInt64) throws(CAPIError) -> TransferHandle {
        guard let t = transfers[id] else { throw .invalidArgument("the id is not a pending load or store") }
        return t
    }

    /// Waits for `id`, writes its per-block outcome into the caller's buffer and forgets it; a buffer too
    /// short leaves it pending, nothing waited for. O(blocks).
    func finish(_ id: UInt64, _ blockOK: UnsafeMutablePointer<UInt8>?, _ capacity: Int) throws(CAPIError) -> TransferHandle {
        let t = try transfer(id)
        let out = try outputBuffer(blockOK, capacity: capacity, "block_ok")
        if let out {
            try requireRoom(t.blocks, capacity: capacity, "block_ok")
            t.wait()
            t.writeOutcome(into: out)
        } else {
            t.wait()
        }
        transfers[id] = nil
        return t
    }
}

extension kvcache_event {
    /// The C form of one tier event, its key at `firstKey` of the keys array.
    init(_ e: TierEvent, blockTokens: Int64, firstKey: Int) {
        let none = kvcache_key(lo: 0, hi: 0)
        let stored = e.kind == .stored
        self.init(kind: stored ? EventCode.stored : EventCode.removed, tier: Int32(e.tier.rawValue),
                  block_tokens: stored ? blockTokens : 0, parent: e.parent.map { kvcache_key(lo: $0.lo, hi: $0.hi) } ?? none,
                  has_parent: e.parent != nil, first_key: firstKey, key_count: 1)
    }
}

extension kvcache_tier_counters {
    init(_ c: TierCounters) {
        self.init(hits: Int64(c.hits), stored_blocks: Int64(c.storedBlocks), removed_blocks: Int64(c.removedBlocks),
                  bytes_in: Int64(c.bytesIn), bytes_out: Int64(c.bytesOut), occupancy: Int64(c.occupancy),
                  capacity: Int64(c.capacity), loaded_blocks: Int64(c.loadedBlocks), not_stored: Int64(c.notStored),
                  failed_loads: Int64(c.failedLoads), dropped_blocks: Int64(c.droppedBlocks))
    }
}
