import KVCache

/// Where a preempted request's KV can be kept instead of being recomputed: host memory behind the
/// host link (the tier manager implements this once host tiers exist).
///
/// The scheduler asks `reserve` when it must preempt; on `true` it lists a swap-out in the step plan
/// (the engine copies the listed device blocks to host before the step's compute; the blocks are
/// freed in the cache at once) and later a swap-in (the engine copies back into the newly allocated
/// blocks), after which it calls `release`. On `false` the request is preempted by recompute.
public protocol SwapSpace: AnyObject {
    /// Reserves host room for `blocks` KV blocks of `id`; false when there is no room.
    func reserve(_ id: SequenceID, blocks: Int) -> Bool
    /// Drops the host copy of `id` (swapped back in, or the request was abandoned).
    func release(_ id: SequenceID)
}

/// A swap space that only counts blocks against a fixed host capacity: what the modelled engine uses
/// (it prices the copies; there are no bytes to move).
public final class CountingSwapSpace: SwapSpace {
    public let capacityBlocks: Int
    public private(set) var usedBlocks = 0
    private var held: [SequenceID: Int] = [:]

    public init(capacityBlocks: Int) { self.capacityBlocks = max(0, capacityBlocks) }

    public func reserve(_ id: SequenceID, blocks: Int) -> Bool {
        guard held[id] == nil, blocks >= 0, usedBlocks + blocks <= capacityBlocks else { return false }
        held[id] = blocks
        usedBlocks += blocks
        return true
    }

    public func release(_ id: SequenceID) {
        if let n = held.removeValue(forKey: id) { usedBlocks -= n }
    }
}
