import KVCache
import KVPlan
import KVTiers

/// The real tiers (`KVTierManager`) as the scheduler's `PrefixLoadSource`: a server sets it as
/// `Scheduler.prefixLoadSource` (and the tiers as the cache's `evictionObserver`), and admission then
/// loads prompt blocks from host memory and disk into the blocks it just allocated, with the same
/// load as `PrefixPlanner` (eviction copies first, then the load, waited for).
///
/// `loadableBlocks` is the tiers' lookup (admission rule included, hits counted once); `load` loads that
/// lookup's blocks (those the allocation in between pushed out fail and are computed instead), or looks
/// up afresh when it is asked for other keys than the last `loadableBlocks` was. The scheduler reports
/// each committed prompt block (`stored`), which the tiers record as device-resident, as
/// `PrefixPlanner.recordStored` does for an engine without a scheduler. `ServingLoop(scheduler:engine:
/// tiers:)` does this wiring. O(blocks) per call plus the copies; `load` allocates the destination
/// list. Single-threaded, like the scheduler that calls it.
public final class TierPrefixSource: PrefixLoadSource {
    public let tiers: KVTierManager
    /// Blocks loaded, from host and disk, over the source's life.
    public private(set) var loaded = TierLoad()

    /// The last `loadableBlocks` answer, which the `load` that follows it uses.
    private var last: (keys: [BlockKey], plan: TierLookup)?

    public init(tiers: KVTierManager) { self.tiers = tiers }

    public func loadableBlocks(_ keys: [BlockKey], from start: Int, maxBlocks: Int) -> Int {
        guard start >= 0, maxBlocks > 0 else { return 0 }
        let plan = tiers.lookup(keys: keys, deviceBlocks: start, maxBlocks: start + maxBlocks)
        last = (keys, plan)
        return plan.loadBlocks
    }

    public var recordsStoredBlocks: Bool { true }

    public func stored(_ keys: [BlockKey], from start: Int, blocks: ArraySlice<BlockID>) {
        PrefixPlanner.noteStored(tiers, keys, from: start, blocks: blocks)
    }

    /// Loads what the tiers still hold of `keys[start ..< start + blocks.count]`; a failed load counts as
    /// no block loaded (the scheduler computes them). O(blocks) plus the copies.
    public func load(_ keys: [BlockKey], from start: Int, into blocks: ArraySlice<BlockID>) -> Int {
        guard start >= 0, !blocks.isEmpty else { return 0 }
        tiers.waitForEvictionCopies()   // the allocation that made `blocks` may have evicted them
        var plan: TierLookup
        if let last, last.plan.deviceBlocks == start, last.keys == keys {
            plan = last.plan
            plan.locations.removeLast(max(0, plan.locations.count - blocks.count))
        } else {
            plan = tiers.lookup(keys: keys, deviceBlocks: start, maxBlocks: start + blocks.count)
        }
        last = nil
        guard plan.loadBlocks > 0 else { return 0 }
        let arrived: (host: Int, disk: Int)
        do {
            arrived = try PrefixPlanner.load(tiers, plan, keys: keys, into: Array(blocks.prefix(plan.loadBlocks)))
        } catch {
            loaded.failedBlocks += plan.loadBlocks
            return 0
        }
        loaded.hostBlocks += arrived.host
        loaded.diskBlocks += arrived.disk
        loaded.failedBlocks += plan.loadBlocks - arrived.host - arrived.disk
        return arrived.host + arrived.disk
    }
}
