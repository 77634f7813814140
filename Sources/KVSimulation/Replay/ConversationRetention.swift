import KVCache
import KVPlan

/// Pensieve's per-conversation retention inside the modelled engine (`ModelledRunConfig.retention`):
/// the device pool holds only the running requests' blocks (no prefix caching), and a
/// `PensieveRetention` of one chunk per block keeps each conversation's context in the pool's other
/// blocks, in host memory, or dropped (leading chunks first).
///
/// - Seam: the scheduler's `PrefixLoadSource`. At a turn's first admission the scheduler asks for its
///   loadable blocks: the conversation's retained GPU and host chunks of the turn's history
///   (`ConversationTurns`); `load` takes the conversation out of the retention (`take`) and they
///   become the request's first blocks, counted as computed. The dropped leading tokens and the new
///   tokens are its prefill. GPU chunks move no bytes; host chunks cross the host link. The scheduler
///   computes a prompt after the blocks it reused, so the recomputed leading tokens are priced with
///   attention over the reused context too (slightly dearer than at their own position, which the
///   retention's own `prefillSeconds` uses; the step times are the engine's).
/// - The engine calls `settle` after each plan: requests whose first prefill the plan holds and that
///   loaded nothing take their conversation out too; then the retention fits in the blocks the
///   running requests leave free (`fit`: moving chunks to the host or dropping them, by the policy's
///   value) and swaps ahead of time while fewer than `swapThreshold` of the pool's blocks are free.
///   `finished` retains a finished turn's prompt blocks (those its next turn's keys can share) in the
///   blocks the pool just freed.
/// - Accounting: after every `settle` and `finished`, the blocks running requests hold plus the
///   retained GPU chunks are at most the pool's capacity (`validate`). Chunks crossing the host link
///   (loads, and with `chargesMoves` the moves to the host on demand and ahead of time) are drained per
///   step by the engine (`drainStepHostBlocks`) and priced by the roofline model's host link;
///   `hostLinkBlocks` counts them all.
///
/// A request takes its conversation once (a request preempted by recompute comes back with nothing
/// retained). `settle` is O(the plan's prefills), the other calls O(1), each plus the retention's
/// O(chunks moved x log conversations); memory
/// O(requests + conversations). Single-threaded, like the scheduler.
public final class ConversationRetention: PrefixLoadSource, StepHostCopies {
    public private(set) var retention: PensieveRetention
    public let turns: ConversationTurns
    public let capacityBlocks: Int
    public let blockTokens: Int
    /// Sums of the turns taken so far (`PensieveRetention.take`'s figures).
    public private(set) var totals = PensieveRetention.Served()

    private let promptTokens: [Int]
    /// Per request: GPU and host tokens it was given at its first admission; -1: not admitted yet.
    private var givenGPU: [Int]
    private var givenHost: [Int]
    private var stepHostBlocks = 0
    /// Whether moves to the host are charged to the steps (loads always are).
    public let chargesMoves: Bool
    /// Blocks copied over the host link so far: loads and moves to the host.
    public private(set) var hostLinkBlocks = 0

    /// A retention of `policy` over a pool of `capacityBlocks` blocks of `blockTokens` with
    /// `hostBlocks` blocks of host memory, for `requests` (their prompt tokens) whose conversations
    /// are `turns`. Throws the retention's `invalidArgument`.
    public init(policy: PensieveRetention.Policy, capacityBlocks: Int, hostBlocks: Int, blockTokens: Int,
                swapThreshold: Double, costModel: RooflineCostModel, promptTokens: [Int],
                turns: ConversationTurns, chargesMoves: Bool = true) throws(CacheModelError) {
        self.chargesMoves = chargesMoves
        retention = try PensieveRetention(.init(
            gpuChunks: capacityBlocks, hostChunks: hostBlocks, chunkTokens: blockTokens, policy: policy,
            cost: costModel.recomputeCost, hostSecondsPerToken: costModel.hostLoadSecondsPerToken,
            swapThreshold: swapThreshold))
        self.turns = turns
        self.capacityBlocks = capacityBlocks
        self.blockTokens = blockTokens
        self.promptTokens = promptTokens
        givenGPU = [Int](repeating: -1, count: promptTokens.count)
        givenHost = [Int](repeating: -1, count: promptTokens.count)
    }

    /// GPU and host tokens request `i` was given at its first admission; nil before it.
    public func given(_ i: Int) -> (gpu: Int, host: Int)? {
        givenGPU[i] < 0 ? nil : (givenGPU[i], givenHost[i])
    }

    // MARK: PrefixLoadSource

    /// Keys alone name no conversation: the scheduler calls the id forms.
    public func loadableBlocks(_ keys: [BlockKey], from start: Int, maxBlocks: Int) -> Int { 0 }
    public func load(_ keys: [BlockKey], from start: Int, into blocks: ArraySlice<BlockID>) -> Int { 0 }

    public func loadableBlocks(for id: SequenceID, _ keys: [BlockKey], from start: Int, maxBlocks: Int) -> Int {
        let i = Int(id.raw)
        guard start == 0, maxBlocks > 0, i >= 0, i < givenGPU.count, givenGPU[i] < 0 else { return 0 }
        let s = retention.hits(conversation: Int(turns.conversation[i]), promptTokens: promptTokens[i],
                               reusableTokens: turns.historyTokens[i])
        return min(maxBlocks, (s.gpuHitTokens + s.hostHitTokens) / blockTokens)
    }

    public func load(for id: SequenceID, _ keys: [BlockKey], from start: Int, into blocks: ArraySlice<BlockID>) -> Int {
        let i = Int(id.raw)
        guard start == 0, i >= 0, i < givenGPU.count, givenGPU[i] < 0 else { return 0 }
        let s = take(i, now: clock)
        let loaded = (s.gpuHitTokens + s.hostHitTokens) / blockTokens
        precondition(loaded <= blocks.count, "the scheduler allocated what loadableBlocks said")
        return loaded
    }

    // MARK: Engine events

    /// The engine's time, for the takes that happen while it plans.
    public var clock = 0.0

    /// After a plan at `now` whose requests hold `heldBlocks` of the pool: takes the conversations of
    /// first admissions that loaded nothing, fits the retained GPU chunks into the rest of the pool and
    /// swaps ahead of time.
    public func settle(_ plan: StepPlan, heldBlocks: Int, now: Double) {
        for p in plan.prefills {
            let i = Int(p.id.raw)
            if i >= 0, i < givenGPU.count, givenGPU[i] < 0 { _ = take(i, now: now) }
        }
        let moved = retention.counters.swappedChunks + retention.counters.aheadOfTimeChunks
        let room = capacityBlocks - heldBlocks
        retention.fit(gpuCapacity: room, now: now)
        retention.swapAheadOfTime(now: now, gpuCapacity: room)
        copied(retention.counters.swappedChunks + retention.counters.aheadOfTimeChunks - moved, charged: chargesMoves)
    }

    /// Request `i` finished normally at `now`, the pool's running requests holding `heldBlocks`
    /// after it: its prompt's full blocks become its conversation's retained context.
    public func finished(_ i: Int, now: Double, heldBlocks: Int) {
        guard i >= 0, i < givenGPU.count, givenGPU[i] >= 0 else { return }
        let before = retention.counters.swappedChunks
        retention.retain(conversation: Int(turns.conversation[i]), now: now,
                         contextTokens: promptTokens[i] / blockTokens * blockTokens, gpuCapacity: capacityBlocks - heldBlocks)
        copied(retention.counters.swappedChunks - before, charged: chargesMoves)
    }

    /// Charged blocks that crossed the host link since the last call.
    public func drainStepHostBlocks() -> Int {
        defer { stepHostBlocks = 0 }
        return stepHostBlocks
    }

    /// The plan's prefix loads are this retention's chunks: the host ones are in `drainStepHostBlocks`.
    public var reportsPrefixLoads: Bool { true }

    private func copied(_ blocks: Int, charged: Bool) {
        hostLinkBlocks += blocks
        if charged { stepHostBlocks += blocks }
    }

    /// Checks the retention's invariants and that `heldBlocks` (the running requests') plus the
    /// retained GPU chunks fit the pool. O(conversations).
    public func validate(heldBlocks: Int) throws(CacheModelError) {
        try retention.validate()
        if heldBlocks + retention.gpuUsed > capacityBlocks {
            throw .invariant("running requests hold \(heldBlocks) blocks and retained conversations \(retention.gpuUsed), over the pool's \(capacityBlocks)")
        }
    }

    private func take(_ i: Int, now: Double) -> PensieveRetention.Served {
        let s = retention.take(conversation: Int(turns.conversation[i]), now: now, promptTokens: promptTokens[i],
                               reusableTokens: turns.historyTokens[i])
        givenGPU[i] = s.gpuHitTokens
        givenHost[i] = s.hostHitTokens
        totals.add(s)
        copied(s.hostHitTokens / blockTokens, charged: true)
        return s
    }
}
