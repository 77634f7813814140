import KVCache

/// One load in flight: the plan (keys, parents, device blocks, host slots or staging places, addresses)
/// and its progress, with the `TransferHandle` the caller waits on. Pooled by the tier manager: a job
/// whose steps and copies have all run and whose handle the caller has dropped is reset and handed out
/// again, its arrays keeping their storage, so a steady stream of loads allocates nothing.
///
/// Steps (`run(step:expired:)`): `step >= 0` copies layer group `step` of every live block to the
/// device; `step < 0` reads block `-1 - step` from the store into its host place. Copy tags are
/// `block * groups + group`.
final class LoadJob: TransferJob, @unchecked Sendable {
    // Sendable: the plan is written under the manager's lock before any step is queued and read-only
    // until the job is reset; `failed`, `groupsLeft`, `blocksLeft` and `readsLeft` only under that lock.
    unowned let manager: KVTierManager
    /// The caller's handle; replaced only when the pool finds it still referenced.
    var handle: TransferHandle
    let groups: Int
    var keys: [BlockKey] = []
    /// Parent key of each block (`.zero` for a first block).
    var parents: [BlockKey] = []
    var blocks: [BlockID] = []
    /// Host slot of each block; negative: index `-1 - slot` into `staging`.
    var slots: [Int32] = []
    var fromDisk: [Bool] = []
    var addresses: [HostAddress] = []
    var failed: [Bool] = []
    /// Blocks that had failed when the group copies were queued (read-only from then on).
    var skip: [Bool] = []
    var groupsLeft: [Int] = []
    /// Host slots pinned by the plan's first pass (-1: not on host then); scratch of `planLoad`.
    var prePinned: [Int32] = []
    var blocksLeft = 0
    var readsLeft = 0
    var started: UInt64 = 0
    /// Bounce buffers for store blocks that found no free host slot; freed on reset and with the job.
    var staging: UnsafeMutableRawBufferPointer?

    init(manager: KVTierManager, blocks: Int) {
        self.manager = manager
        groups = manager.groupRanges.count
        handle = TransferHandle(blocks: blocks, layerGroups: manager.groupRanges)
    }

    deinit { staging?.deallocate() }

    /// Empties the plan for a new load of `blocks` blocks, keeping storage. O(blocks).
    func reset(blocks n: Int) {
        handle.reset(blocks: n)
        keys.removeAll(keepingCapacity: true)
        parents.removeAll(keepingCapacity: true)
        blocks.removeAll(keepingCapacity: true)
        slots.removeAll(keepingCapacity: true)
        fromDisk.removeAll(keepingCapacity: true)
        addresses.removeAll(keepingCapacity: true)
        failed.removeAll(keepingCapacity: true)
        skip.removeAll(keepingCapacity: true)
        groupsLeft.removeAll(keepingCapacity: true)
        prePinned.removeAll(keepingCapacity: true)
        blocksLeft = 0
        readsLeft = 0
        finished = false
        staging?.deallocate()
        staging = nil
    }

    override func run(step: Int, expired: Bool) {
        let manager = self.manager
        if step >= 0 { manager.copyGroup(self, group: step, expired: expired) }
        else { manager.readStep(self, block: -1 - step, expired: expired) }
        manager.stepEnded(self)
    }

    override func copyFinished(tag: Int, ok: Bool) {
        manager.finishGroup(self, block: tag / groups, group: tag % groups, ok: ok)
    }
}
