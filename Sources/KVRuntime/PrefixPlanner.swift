import KVCache
import KVPlan
import KVTiers

/// The tier leg of one prompt, written once: how the device cache (`KVCacheManager`) and the lower
/// tiers (`KVTierManager`) take turns while a request is admitted. Every engine with real tiers runs
/// these phases in this order (the verifying replay harness and the reference engine do):
///
/// 1. The cache's `lookup` gives the device hit; `lookup(keys:deviceTokens:promptTokens:)` extends it
///    through host and disk, up to the block before the last prompt token (whose logits are always
///    computed). Changes nothing; it comes before the allocation, whose evictions change the tiers.
/// 2. The caller allocates device blocks for the loads and the rest of the prompt (evictions copy
///    blocks down through the cache's `evictionObserver`, which the tiers are).
/// 3. `load(_:_:keys:)` waits for those eviction copies, loads the planned blocks into the blocks that follow
///    the device prefix, waits for them and commits the leading ones that arrived (a block that
///    vanished or failed its checks, and everything after it, is computed instead).
/// 4. The caller computes the rest of the prompt and commits it.
/// 5. `recordStored(_:keys:from:)` tells the tiers which device block holds each computed prompt block,
///    reading the block table after the commits (deduplication may have swapped ids).
///
/// `admit(_:keys:promptTokens:computeTokens:)` runs 1 to 3 for a caller whose allocation is the plain
/// `KVCacheManager.allocate` (`admission`, the same with the refusal's block counts, is what the C ABI's
/// `kvcache_tiers_admit` runs). Cost: O(prompt blocks) per phase plus the copies; phase 3 allocates the
/// destination list. Single-threaded, like the cache manager. A phase that throws has left the
/// sequence registered; the caller frees it.
public struct PrefixPlanner {
    public let cache: KVCacheManager
    public let tiers: KVTierManager

    public init(cache: KVCacheManager, tiers: KVTierManager) {
        self.cache = cache
        self.tiers = tiers
    }

    /// Phase 1: where the tiers hold the prompt blocks after the first `deviceTokens` (whole blocks the
    /// device already holds) of a `promptTokens`-token prompt with full-block keys `keys`.
    public func lookup(keys: [BlockKey], deviceTokens: Int, promptTokens: Int) -> TierLookup {
        let B = cache.blockTokens
        return tiers.lookup(keys: keys, deviceBlocks: deviceTokens / B, maxBlocks: (promptTokens - 1) / B)
    }

    /// Phase 3: loads `plan` into the blocks of `id` that follow its device prefix (allocated already),
    /// waits for them and commits the leading blocks that arrived as computed.
    /// - Throws: `.invalidArgument` when the block table is too short for the plan, `.cache` for the
    ///   cache's errors, the tiers' errors of `load`.
    public func load(_ id: SequenceID, _ plan: TierLookup, keys: [BlockKey]) throws(TierError) -> TierLoad {
        var result = TierLoad()
        // Before anything is written into the new blocks: they may be ones whose eviction copy is running.
        tiers.waitForEvictionCopies()
        guard plan.loadBlocks > 0 else { return result }
        let table: [BlockID]
        do { table = try cache.blockTable(id) } catch { throw .cache(error) }
        let first = plan.deviceBlocks
        guard first + plan.loadBlocks <= table.count else {
            throw .invalidArgument("\(table.count) blocks cannot take \(plan.loadBlocks) loads after \(first)")
        }
        let arrived = try Self.load(tiers, plan, keys: keys, into: Array(table[first ..< first + plan.loadBlocks]))
        result.hostBlocks = arrived.host
        result.diskBlocks = arrived.disk
        result.failedBlocks = plan.loadBlocks - arrived.host - arrived.disk
        result.tokens = result.loadedBlocks * cache.blockTokens
        if result.tokens > 0 {
            do { try cache.commit(id, computedTokens: result.tokens) } catch { throw .cache(error) }
        }
        return result
    }

    /// What `admission` did with a request.
    public enum Admission: Sendable, Equatable {
        /// Admitted: the device held `deviceTokens` prompt tokens, `load` came from the tiers.
        case admitted(deviceTokens: Int, load: TierLoad)
        /// The pool cannot take the request now (the allocation's `.insufficientBlocks`); nothing changed
        /// beyond the lookups' counters.
        case refused(needed: Int, available: Int)
    }

    /// Phases 1 to 3 for a sequence registered with `keys` as its prompt keys and `promptTokens`
    /// tokens: the device lookup, the tiers' lookup, `allocate` of `computeTokens` (the prompt tokens
    /// whose KV this request holds) minus the device hit, and the load. Returns nil, changing nothing
    /// beyond the lookup, when the pool cannot take the request.
    public func admit(_ id: SequenceID, keys: [BlockKey], promptTokens: Int,
                      computeTokens: Int) throws(TierError) -> (deviceTokens: Int, load: TierLoad)? {
        switch try admission(id, keys: keys, promptTokens: promptTokens, computeTokens: computeTokens) {
        case .admitted(let deviceTokens, let load): (deviceTokens, load)
        case .refused: nil
        }
    }

    /// `admit`, saying how many blocks a refused request needed and how many the pool had (the C ABI's
    /// `kvcache_tiers_admit` reports them).
    public func admission(_ id: SequenceID, keys: [BlockKey], promptTokens: Int,
                          computeTokens: Int) throws(TierError) -> Admission {
        let hit: PrefixHit
        do { hit = try cache.lookup(id) } catch { throw .cache(error) }
        // The tiers' lookup comes before the allocation, whose evictions change what they hold.
        let plan = lookup(keys: keys, deviceTokens: hit.cachedTokens, promptTokens: promptTokens)
        let outcome: AllocationOutcome
        do { outcome = try cache.allocate(id, newTokens: computeTokens - hit.cachedTokens) } catch { throw .cache(error) }
        if case .insufficientBlocks(let needed, let available) = outcome { return .refused(needed: needed, available: available) }
        return .admitted(deviceTokens: hit.cachedTokens, load: try load(id, plan, keys: keys))
    }

    /// Phase 5: records, for each full prompt block from `first` up to the computed ones, the device
    /// block that holds it and its parent key. O(blocks).
    public func recordStored(_ id: SequenceID, keys: [BlockKey], from first: Int = 0) throws(TierError) {
        let table: [BlockID]
        let done: Int
        do { table = try cache.blockTable(id); done = try cache.computedTokens(id) } catch { throw .cache(error) }
        let end = min(keys.count, done / cache.blockTokens, table.count)
        guard first < end else { return }
        Self.noteStored(tiers, keys, from: first, blocks: table[first ..< end])
    }

    /// Tells `tiers` that device block `blocks[i]` holds `keys[i]` (parent `keys[i - 1]`) for each `i` of
    /// `blocks`' indices, from `first`. Shared with `TierPrefixSource`. O(blocks).
    static func noteStored(_ tiers: KVTierManager, _ keys: [BlockKey], from first: Int, blocks: ArraySlice<BlockID>) {
        for (i, block) in zip(first..., blocks) {
            tiers.noteStored(block: block, key: keys[i], parent: i == 0 ? nil : keys[i - 1])
        }
    }

    /// The load itself, shared with `TierPrefixSource` (the caller has waited for eviction copies):
    /// loads `plan` into `blocks`, waits, and counts the leading blocks that arrived by where they came
    /// from.
    static func load(_ tiers: KVTierManager, _ plan: TierLookup, keys: [BlockKey],
                     into blocks: [BlockID]) throws(TierError) -> (host: Int, disk: Int) {
        let handle = try tiers.load(plan, keys: keys, into: blocks)
        handle.wait()
        let loaded = handle.loadedPrefixBlocks
        let fromDisk = handle.loadedFromDisk
        var disk = 0
        for i in 0 ..< min(loaded, fromDisk.count) where fromDisk[i] { disk += 1 }
        return (loaded - disk, disk)
    }
}
