import Dispatch
import KVCache
import KVPlan
import KVTiers

/// The scheduler's `SwapSpace` over host slots with bytes: a preempted request's KV blocks are copied
/// from the device pool (through the same `DeviceMemory` the tiers use) into host slots of its own
/// `HostSlabPool`, and back into the blocks its swap-in allocates.
///
/// The scheduler only reserves and releases; the copies are the runtime's: `perform(_:)` runs a step
/// plan's swap-outs, then its swap-ins (a swap-in may land in blocks a swap-out of the same step just
/// freed), each copy waited for, before the engine computes. A release takes effect after the next
/// `perform`, so a request swapped out and back in within one plan still finds its bytes. The swapped
/// prefix blocks that the device cache still held at swap-in receive the bytes they had at swap-out
/// (the same KV).
///
/// Contract: `reserve` is all or nothing; `perform` copies `ceil(tokens / blockTokens)` blocks of each
/// transfer and throws `.invalidArgument` (copying nothing more) for a transfer it holds no slots for,
/// `.system` for a copy the device reported failed. O(1) per reserve and release; O(blocks) per
/// transfer plus the copies; allocates nothing per call but the slot lists of a reservation.
/// Single-threaded, like the scheduler.
public final class TierSwapSpace: SwapSpace {
    /// Where the blocks live on the device.
    public let device: any DeviceMemory
    /// Host slots in all.
    public let capacityBlocks: Int
    private let slab: HostSlabPool
    private var free: [Int32]
    /// Slots of each swapped (or reserved) request, in block-table order.
    private var held: [SequenceID: [Int32]] = [:]
    /// Released requests whose slots return to `free` after the next `perform`.
    private var releasing: [SequenceID: [Int32]] = [:]
    /// Blocks copied each way over the space's life.
    public private(set) var swappedOutBlocks = 0, swappedInBlocks = 0

    /// - Parameters:
    ///   - device: the device pool's memory (the tiers' `device`).
    ///   - capacityBlocks: host slots of `device.layout.bytesPerBlock` each.
    ///   - lockMemory: page-lock the slots where permitted.
    /// - Throws: the slab's errors (sizes, memory).
    public init(device: any DeviceMemory, capacityBlocks: Int, lockMemory: Bool = false) throws(TierError) {
        self.device = device
        self.capacityBlocks = capacityBlocks
        slab = try HostSlabPool(blockBytes: device.layout.bytesPerBlock, capacity: capacityBlocks, lockMemory: lockMemory)
        free = (0 ..< Int32(capacityBlocks)).reversed()
    }

    /// Slots not held by any request (released ones count once the next `perform` has run).
    public var freeBlocks: Int { free.count }

    public func reserve(_ id: SequenceID, blocks: Int) -> Bool {
        guard held[id] == nil, releasing[id] == nil, blocks >= 0, blocks <= free.count else { return false }
        held[id] = Array(free.suffix(blocks).reversed())
        free.removeLast(blocks)
        return true
    }

    public func release(_ id: SequenceID) {
        if let slots = held.removeValue(forKey: id) { releasing[id] = slots }
    }

    /// Copies `plan`'s swap-outs to host and its swap-ins back, then frees what was released.
    public func perform(_ plan: StepPlan) throws(TierError) {
        defer {
            for (_, slots) in releasing { free.append(contentsOf: slots) }
            releasing.removeAll(keepingCapacity: true)
        }
        for s in plan.swapOuts {
            try copy(s, slots: held[s.id], toHost: true)
            swappedOutBlocks += blockCount(s)
        }
        for s in plan.swapIns {
            try copy(s, slots: held[s.id] ?? releasing[s.id], toHost: false)
            swappedInBlocks += blockCount(s)
        }
    }

    /// Checks that every slot is in exactly one place: free, held by one request, or released and
    /// waiting for the next `perform`. O(capacity).
    public func validate() throws(InvariantViolation) {
        var seen = [Bool](repeating: false, count: capacityBlocks)
        for slot in free + held.values.joined() + releasing.values.joined() {
            guard slot >= 0, Int(slot) < capacityBlocks, !seen[Int(slot)] else {
                throw InvariantViolation("swap slot \(slot) is out of range or in two places")
            }
            seen[Int(slot)] = true
        }
        guard !seen.contains(false) else { throw InvariantViolation("a swap slot is neither free nor held") }
        guard Set(held.keys).isDisjoint(with: releasing.keys) else {
            throw InvariantViolation("a request both holds and releases swap slots")
        }
    }

    private func blockCount(_ s: StepPlan.SwapTransfer) -> Int {
        min(s.blocks.count, (s.tokens + device.layout.blockTokens - 1) / device.layout.blockTokens)
    }

    /// Copies the transfer's blocks between the device and `slots`, one at a time, each waited for.
    private func copy(_ s: StepPlan.SwapTransfer, slots: [Int32]?, toHost: Bool) throws(TierError) {
        let n = blockCount(s)
        guard let slots, slots.count >= n else {
            throw .invalidArgument("\(s.id) has \(slots?.count ?? 0) swap slots for \(n) blocks")
        }
        let bytes = device.layout.bytesPerBlock
        for i in 0 ..< n {
            let ok = slab.withSlot(slots[i], count: bytes) { buffer in
                let done = DispatchSemaphore(value: 0)
                let result = CopyResult()
                let host = HostAddress(buffer.baseAddress!)
                if toHost {
                    device.copyToHost(block: s.blocks[i], range: 0 ..< bytes, host: host) { result.ok = $0; done.signal() }
                } else {
                    device.copyFromHost(block: s.blocks[i], range: 0 ..< bytes, host: host) { result.ok = $0; done.signal() }
                }
                done.wait()
                return result.ok
            }
            guard ok else { throw .system(call: toHost ? "swap-out copy" : "swap-in copy", errno: 0) }
        }
    }
}

/// One copy's outcome, written by the completion (any thread) before the semaphore is signalled.
private final class CopyResult: @unchecked Sendable {
    // Sendable: written once by the completion, read after the semaphore's wait (which orders them).
    var ok = false
}
