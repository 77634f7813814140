import KVCache

/// What the engine runs in one step: prefill chunks, decodes, and the preemptions and KV copies that
/// come first. Built by the scheduler (`Scheduler.schedule`); the arrays are reused step after step.
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

        public init(id: SequenceID, tokens: Int, contextBefore: Int, samples: Bool) {
            self.id = id; self.tokens = tokens; self.contextBefore = contextBefore; self.samples = samples
        }
    }

    /// A request that computes the KV of its last token and samples the next.
    public struct Decode: Sendable, Equatable {
        public var id: SequenceID
        /// Tokens whose KV attention reads (already computed before this step).
        public var context: Int

        public init(id: SequenceID, context: Int) { self.id = id; self.context = context }
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

        public init(id: SequenceID, mode: PreemptionMode, tokens: Int) { self.id = id; self.mode = mode; self.tokens = tokens }
    }

    /// A KV copy over the host link: blocks to copy out before the step, or into before the step.
    public struct SwapTransfer: Sendable, Equatable {
        public var id: SequenceID
        /// Device blocks to copy from (swap-out) or into (swap-in), in block-table order.
        public var blocks: [BlockID]
        public var tokens: Int

        public init(id: SequenceID, blocks: [BlockID], tokens: Int) { self.id = id; self.blocks = blocks; self.tokens = tokens }
    }

    /// Prompt blocks a lower tier supplies instead of the engine computing them: copied into `blocks`
    /// before the step (the tokens count as computed, so no prefill covers them).
    public struct PrefixLoad: Sendable, Equatable {
        public var id: SequenceID
        /// Device blocks the tier's copies land in, in block-table order.
        public var blocks: [BlockID]
        public var tokens: Int

        public init(id: SequenceID, blocks: [BlockID], tokens: Int) { self.id = id; self.blocks = blocks; self.tokens = tokens }
    }

    public package(set) var prefills: [Prefill] = []
    public package(set) var decodes: [Decode] = []
    public package(set) var preemptions: [Preemption] = []
    public package(set) var swapOuts: [SwapTransfer] = []
    public package(set) var swapIns: [SwapTransfer] = []
    /// Prompt blocks loaded from a lower tier (`Scheduler.prefixLoadSource`) into the listed device
    /// blocks before the step; their tokens count as computed.
    public package(set) var prefixLoads: [PrefixLoad] = []
    /// The requests that sample a token this step, in the order `Scheduler.complete` expects its stop
    /// flags: every sampling prefill in `prefills` order, then every decode in `decodes` order.
    public package(set) var samplerCount: Int = 0

    // Slots of the scheduled requests, parallel to `prefills` and `decodes` (the scheduler's bookkeeping).
    package var prefillSlots: [Int32] = []
    package var decodeSlots: [Int32] = []

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

    package mutating func reset() {
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
