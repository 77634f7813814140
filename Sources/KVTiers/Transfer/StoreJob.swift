import KVCache

/// One store (or eviction copy) in flight: for each block whose key got a host slot, the device block,
/// the slot and its address, and how many layer-group copies are left; with the one-group
/// `TransferHandle` the caller waits on. Pooled by the tier manager like `LoadJob` (no allocation per
/// store in steady state).
///
/// Steps: `run(step: i, …)` copies block `i` to its host slot, one copy per layer group; copy tags are
/// `block * groups + group`.
final class StoreJob: TransferJob, @unchecked Sendable {
    // Sendable: the per-block plan is written under the manager's lock before the block's step is
    // queued; `failed` and `groupsLeft` only under that lock.
    unowned let manager: KVTierManager
    var handle: TransferHandle
    let groups: Int
    var blocks: [BlockID] = []
    var keys: [BlockKey] = []
    /// The block's host slot (-1: no copy asked for it).
    var slots: [Int32] = []
    var addresses: [HostAddress?] = []
    var failed: [Bool] = []
    var groupsLeft: [Int] = []
    /// Blocks whose copy was started and has not finished.
    var copiesLeft = 0

    init(manager: KVTierManager, blocks: Int) {
        self.manager = manager
        groups = manager.byteGroups.count
        handle = TransferHandle(blocks: blocks, layerGroups: manager.storeGroups)
    }

    /// Empties the job for a store of `n` blocks, keeping storage. O(n).
    func reset(blocks n: Int) {
        handle.reset(blocks: n)
        blocks.removeAll(keepingCapacity: true)
        keys.removeAll(keepingCapacity: true)
        slots.removeAll(keepingCapacity: true)
        addresses.removeAll(keepingCapacity: true)
        failed.removeAll(keepingCapacity: true)
        groupsLeft.removeAll(keepingCapacity: true)
        copiesLeft = 0
        finished = false
        for _ in 0 ..< n {
            blocks.append(-1)
            keys.append(.zero)
            slots.append(-1)
            addresses.append(nil)
            failed.append(false)
            groupsLeft.append(0)
        }
    }

    override func run(step: Int, expired: Bool) {
        let manager = self.manager
        manager.copyBlockToHost(self, block: step, expired: expired)
        manager.stepEnded(self)
    }

    override func copyFinished(tag: Int, ok: Bool) {
        manager.finishStoreCopy(self, block: tag / groups, ok: ok)
    }
}
