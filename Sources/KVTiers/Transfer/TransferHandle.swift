import KVCache

/// A handle on an asynchronous load (or prefetch): the caller waits for all of it, or for one layer
/// group at a time, so an engine can compute layer group g while group g+1 is still being copied.
///
/// Each of the `blocks` blocks completes once per layer group; a block that could not be loaded (a disk
/// record that failed its checksum, a copy error, a prefetch past its deadline) completes as failed.
/// Thread-safe.
public final class TransferHandle: @unchecked Sendable {
    // Sendable: mutable state only under `cond`'s mutex.
    public var blocks: Int { cond.withLock { blockCount } }
    private var blockCount: Int
    public let layerGroups: [Range<Int>]
    private let cond = ConditionLock()
    private var pendingPerGroup: [Int]
    private var pendingTotal: Int
    private var failed: [Bool]
    private var startNanos: UInt64
    private var finishNanos: UInt64 = 0
    private var onFinish: (@Sendable () -> Void)?

    init(blocks: Int, layerGroups: [Range<Int>]) {
        blockCount = blocks
        self.layerGroups = layerGroups
        pendingPerGroup = Array(repeating: blocks, count: layerGroups.count)
        pendingTotal = blocks * layerGroups.count
        failed = Array(repeating: false, count: blocks)
        startNanos = KVClock.monotonicNanos()
        if pendingTotal == 0 { finishNanos = startNanos }
    }

    /// Makes a finished handle new again for `blocks` blocks, reusing its storage (no allocation when
    /// it held as many blocks before). Only for a handle nobody else references (the manager's pool
    /// checks that). O(blocks).
    func reset(blocks: Int) {
        cond.withLock {
            blockCount = blocks
            for g in pendingPerGroup.indices { pendingPerGroup[g] = blocks }
            pendingTotal = blocks * layerGroups.count
            failed.removeAll(keepingCapacity: true)
            for _ in 0 ..< blocks { failed.append(false) }
            fromDisk.removeAll(keepingCapacity: true)
            startNanos = KVClock.monotonicNanos()
            finishNanos = pendingTotal == 0 ? startNanos : 0
        }
    }

    /// Records that layer group `group` of block `block` is done (or failed). Returns true when this was
    /// the last pending piece of the whole transfer.
    @discardableResult
    func complete(block: Int, group: Int, success: Bool) -> Bool {
        let last: Bool = cond.withLock {
            if !success { failed[block] = true }
            pendingPerGroup[group] -= 1
            pendingTotal -= 1
            if pendingTotal == 0 { finishNanos = KVClock.monotonicNanos() }
            cond.broadcast()
            return pendingTotal == 0
        }
        return last
    }

    /// Marks every remaining group of `block` failed (e.g. its disk read failed before any copy).
    func fail(block: Int, groups: Range<Int>) {
        for g in groups { complete(block: block, group: g, success: false) }
    }

    /// Whether every block and group has completed.
    public var isComplete: Bool { cond.withLock { pendingTotal == 0 } }

    /// Blocks until everything has completed.
    public func wait() { cond.withLock { while pendingTotal > 0 { cond.wait() } } }

    /// Blocks until layer group `group` of every block has completed. Out-of-range groups return at once.
    public func wait(layerGroup group: Int) {
        guard group >= 0 && group < layerGroups.count else { return }
        cond.withLock { while pendingPerGroup[group] > 0 { cond.wait() } }
    }

    /// Waits until everything has completed or `timeoutNanos` passed; returns whether it completed.
    public func wait(timeoutNanos: UInt64) -> Bool {
        let deadline = KVClock.monotonicNanos() &+ timeoutNanos
        return cond.withLock {
            while pendingTotal > 0 { if !cond.wait(untilMonotonicNanos: deadline) && KVClock.monotonicNanos() >= deadline { break } }
            return pendingTotal == 0
        }
    }

    /// After completion: how many leading blocks loaded (the prefix the engine may treat as computed).
    public var loadedPrefixBlocks: Int {
        cond.withLock { failed.firstIndex(of: true) ?? blockCount }
    }

    /// For each block, whether it came from disk (set when the load is planned).
    public internal(set) var loadedFromDisk: [Bool] {
        get { cond.withLock { fromDisk } }
        set { cond.withLock { fromDisk = newValue } }
    }
    private var fromDisk: [Bool] = []

    /// Records, for each block, whether it came from disk, reusing the handle's storage. O(blocks).
    func setLoadedFromDisk(_ flags: [Bool]) {
        cond.withLock {
            fromDisk.removeAll(keepingCapacity: true)
            fromDisk.append(contentsOf: flags)
        }
    }

    /// After completion: indices of the blocks that failed.
    public var failedBlocks: [Int] { cond.withLock { failed.indices.filter { failed[$0] } } }

    /// How many blocks have failed so far. O(blocks), no allocation.
    public var failedCount: Int { cond.withLock { failed.count { $0 } } }

    /// Writes 1 for each block that has not failed (so far) and 0 for each one that has into
    /// `out[0 ..< blocks]`, which must hold `blocks` entries. O(blocks), no allocation.
    public func writeOutcome(into out: UnsafeMutablePointer<UInt8>, okValue: UInt8 = 1) {
        cond.withLock {
            for i in 0 ..< blockCount { out[i] = failed[i] ? 1 - okValue : okValue }
        }
    }

    /// Wall time from creation to completion, in nanoseconds (0 while running).
    public var elapsedNanos: UInt64 { cond.withLock { finishNanos == 0 ? 0 : finishNanos - startNanos } }
}
