import CKVCache
import KVCache
import KVRuntime
import KVTiers

// A prompt's tier leg through the C ABI (the "A prompt's tier leg through the library" section of
// kvcache.h): a cache with a tier manager attached below it runs `PrefixPlanner`, the runtime's one
// writing of that leg, instead of the caller composing the tier verbs. The wiring is the runtime's
// (`KVCacheManager.placeTiers`): the tiers are the cache's eviction observer and its lower-tier event source. Every
// argument is checked before the planner is called, so a refused call has changed nothing.

/// kvcache_tiers_attach: wires `tiers` below `cache` and keeps a reference to them. O(1).
@_cdecl("kvcache_tiers_attach")
public func kvcacheTiersAttachImpl(_ cache: OpaquePointer?, _ tiers: OpaquePointer?) -> kvcache_status {
    withHandle(cache, "kvcache_tiers_attach") { (h) throws(CAPIError) in
        guard let tiers else { throw .nullHandle }
        try borrow(tiers) { (t: TierHandle) throws(CAPIError) in try h.attach(t) }
    }
}

/// kvcache_tiers_detach: waits for the eviction copies, unwires the tiers, drops the reference. O(pending
/// eviction copies).
@_cdecl("kvcache_tiers_detach")
public func kvcacheTiersDetachImpl(_ cache: OpaquePointer?) -> kvcache_status {
    withHandle(cache, "kvcache_tiers_detach") { (h) throws(CAPIError) in
        guard let attached = h.attached else { throw .invalidArgument("the cache has no tiers attached") }
        // A block the cache evicted may still be on its way to host; the next allocation must not hand it out.
        attached.tiers.manager.waitForEvictionCopies()
        h.detachTiers()
    }
}

/// kvcache_tiers_admit: `PrefixPlanner.admission` of the sequence's prompt keys and prompt tokens.
/// O(prompt blocks) plus the copies; allocates the keys and the load's destination list.
@_cdecl("kvcache_tiers_admit")
public func kvcacheTiersAdmitImpl(_ cache: OpaquePointer?, _ tiers: OpaquePointer?, _ id: Int64, _ kvTokens: Int64,
                                  _ out: UnsafeMutablePointer<kvcache_tier_admission>?) -> kvcache_status {
    withHandle(cache, "kvcache_tiers_admit") { (h) throws(CAPIError) in
        let planner = try h.planner(tiers)
        let out = try required(out, "out")
        let seq = SequenceID(id)
        let (keys, promptTokens) = try lift { () throws(KVCacheError) in
            (try h.manager.promptKeys(seq), try h.manager.promptTokens(seq))
        }
        // The most the caches can supply: the prompt's keyed full blocks before its last token.
        let most = min(keys.count, (promptTokens - 1) / h.manager.blockTokens) * h.manager.blockTokens
        guard kvTokens >= Int64(most), kvTokens <= Int64(promptTokens) else {
            throw .invalidArgument("kv_tokens is below the prompt's full blocks before its last token or above n_tokens")
        }
        let admission = try liftPlanner { () throws(TierError) in
            try planner.admission(seq, keys: keys, promptTokens: promptTokens, computeTokens: Int(kvTokens))
        }
        switch admission {
        case .refused(let needed, let available):
            throw .cache(.insufficientBlocks(needed: needed, available: available))
        case .admitted(let deviceTokens, let load):
            out.pointee = kvcache_tier_admission(
                device_tokens: Int64(deviceTokens), loaded_tokens: Int64(load.tokens),
                compute_tokens: kvTokens - Int64(deviceTokens + load.tokens), host_blocks: Int64(load.hostBlocks),
                disk_blocks: Int64(load.diskBlocks), failed_blocks: Int64(load.failedBlocks))
        }
    }
}

/// kvcache_tiers_record_stored: `PrefixPlanner.recordStored` of the sequence's prompt keys from
/// `first_block`. O(blocks); allocates the keys.
@_cdecl("kvcache_tiers_record_stored")
public func kvcacheTiersRecordStoredImpl(_ cache: OpaquePointer?, _ tiers: OpaquePointer?, _ id: Int64,
                                         _ firstBlock: Int64) -> kvcache_status {
    withHandle(cache, "kvcache_tiers_record_stored") { (h) throws(CAPIError) in
        let planner = try h.planner(tiers)
        guard firstBlock >= 0 else { throw .invalidArgument("first_block is negative") }
        let seq = SequenceID(id)
        let keys = try lift { () throws(KVCacheError) in try h.manager.promptKeys(seq) }
        try liftPlanner { () throws(TierError) in try planner.recordStored(seq, keys: keys, from: Int(clamping: firstBlock)) }
    }
}

extension CacheHandle {
    /// Wires `tiers` below the cache with `placeTiers` (eviction observer, lower-tier events) and
    /// keeps them. Refuses, changing nothing, a second attachment of either handle and tiers whose block
    /// size differs or whose device pool does not cover this cache's block ids. O(1).
    func attach(_ tiers: TierHandle) throws(CAPIError) {
        guard attached == nil else { throw .invalidArgument("the cache has tiers attached already") }
        guard !tiers.isAttached else { throw .invalidArgument("the tiers are attached to a cache already") }
        guard tiers.manager.layout.blockTokens == manager.blockTokens else {
            throw .invalidArgument("the tiers' block_tokens differ from the cache's")
        }
        guard tiers.manager.device.capacityBlocks >= manager.capacityBlocks else {
            throw .invalidArgument("the tiers' device_blocks are fewer than the cache's capacity_blocks")
        }
        manager.placeTiers(tiers.manager)   // weak in the manager; `attached` keeps it alive
        tiers.isAttached = true
        attached = (tiers, PrefixPlanner(cache: manager, tiers: tiers.manager))
    }

    /// Unwires and releases the attached tiers, if any (also when the cache is destroyed: nothing waits
    /// then, the tier manager finishes its transfers when it closes). O(1).
    func detachTiers() {
        guard let tiers = attached?.tiers else { return }
        manager.placeTiers(nil)
        tiers.isAttached = false
        attached = nil
    }

    /// The planner over the attached tiers when `pointer` is their handle. O(1).
    func planner(_ pointer: OpaquePointer?) throws(CAPIError) -> PrefixPlanner {
        guard let pointer else { throw .nullHandle }
        try checkHandle(pointer, TierHandle.self)
        guard let attached, UnsafeMutableRawPointer(pointer) == Unmanaged.passUnretained(attached.tiers).toOpaque() else {
            throw .invalidArgument("the tiers are not the ones attached to the cache")
        }
        return attached.planner
    }
}

/// Runs a planner call: the cache's errors it wraps become the boundary's cache errors (their own
/// statuses), the tiers' stay tier errors.
@inline(__always)
private func liftPlanner<R>(_ call: () throws(TierError) -> R) throws(CAPIError) -> R {
    do { return try call() } catch {
        if case .cache(let e) = error { throw .cache(e) }
        throw .tier(error)
    }
}
