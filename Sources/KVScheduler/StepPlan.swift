import KVCache

/// What the engine runs in one step: prefill chunks, decodes, and the preemptions and KV copies that
/// come first. Built by `Scheduler.schedule`; the arrays are reused step after step.
public struct StepPlan: Sendable {
    /// A chunk of a prompt (or of a preempted request's prompt plus its output so far) to compute.
    public struct Prefill: Sendable, Equatable {
        public var id: SequenceID
        /// Tokens computed this step.
        public var tokens: Int
        /// Tokens whose KV is already in the cache before this chunk (prefix hits and earlier chunks).
        public var contextBefore: Int
        /// True when this chunk ends the prompt: the step samples this request's next token.
        public var samples: Bool
    }

    /// A request that computes the KV of its last token and samples the next.
    public struct Decode: Sendable, Equatable {
        public var id: SequenceID
        /// Tokens whose KV attention reads (already computed before this step).
        public var context: Int
    }

    /// How a request lost its place.
    public enum PreemptionMode: Sendable, Equatable {
        /// Its KV is dropped (cached prefix blocks may still hit later); it prefills again.
        case recompute
        /// Its KV goes to host memory (see `SwapSpace`) and comes back with a swap-in.
        case swap
    }

    public struct Preemption: Sendable, Equatable {
        public var id: SequenceID
        public var mode: PreemptionMode
        /// Tokens whose KV it held.
        public var tokens: Int
    }

    /// A KV copy over the host link: blocks to copy out before the step, or into before the step.
    public struct SwapTransfer: Sendable, Equatable {
        public var id: SequenceID
        /// Device blocks to copy from (swap-out) or into (swap-in), in block-table order.
        public var blocks: [BlockID]
        public var tokens: Int
    }

    public internal(set) var prefills: [Prefill] = []
    public internal(set) var decodes: [Decode] = []
    public internal(set) var preemptions: [Preemption] = []
    public internal(set) var swapOuts: [SwapTransfer] = []
    public internal(set) var swapIns: [SwapTransfer] = []
    /// Prompt blocks loaded from a lower tier (`Scheduler.prefixLoadSource`) into the listed device
    /// blocks before the step; their tokens count as computed.
    public internal(set) var prefixLoads: [SwapTransfer] = []
    /// The requests that sample a token this step, in the order `Scheduler.complete` expects its stop
    /// flags: every sampling prefill in `prefills` order, then every decode in `decodes` order.
    public internal(set) var samplerCount: Int = 0

    // Slots of the scheduled requests, parallel to `prefills` and `decodes` (internal bookkeeping).
    var prefillSlots: [Int32] = []
    var decodeSlots: [Int32] = []

    public init() {}

    /// Tokens computed this step.
    public var batchedTokens: Int {
        var n = decodes.count
        for p in prefills { n += p.tokens }
        return n
    }

    /// True when the step has nothing to run.
    public var isEmpty: Bool {
        prefills.isEmpty && decodes.isEmpty && swapOuts.isEmpty && swapIns.isEmpty && prefixLoads.isEmpty
    }

    mutating func reset() {
        prefills.removeAll(keepingCapacity: true)
        decodes.removeAll(keepingCapacity: true)
        preemptions.removeAll(keepingCapacity: true)
        swapOuts.removeAll(keepingCapacity: true)
        swapIns.removeAll(keepingCapacity: true)
        prefixLoads.removeAll(keepingCapacity: true)
        prefillSlots.removeAll(keepingCapacity: true)
        decodeSlots.removeAll(keepingCapacity: true)
        samplerCount = 0
    }
}

/// Counters over the scheduler's life.
public struct SchedulerStats: Sendable, Equatable {
    public var submitted = 0
    public var admitted = 0
    public var finished = 0
    /// Finished because they could not fit (see `FinishReason.capacity`).
    public var capacityFinishes = 0
    public var preemptions = 0
    /// KV tokens dropped by recompute preemptions (work to redo, less any prefix hits on return).
    public var preemptedTokens = 0
    public var swappedOutTokens = 0
    /// Prompt tokens served from the prefix cache at admission.
    public var prefixHitTokens = 0
    /// Prompt tokens loaded from a lower tier at admission (see `PrefixLoadSource`), not recomputed.
    public var prefixLoadedTokens = 0
    /// Times a request outgrew its reservation and was extended from free blocks.
    public var extensions = 0
    /// Times a request waited a step for a block instead of preempting another.
    public var stalls = 0
    public var steps = 0
    public init() {}
}
