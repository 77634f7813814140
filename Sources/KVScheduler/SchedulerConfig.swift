import KVCache

/// How much KV a request reserves when it is admitted, and what happens when it needs more.
public enum ReservationPolicy: String, Sendable, CaseIterable {
    /// Prompt plus `max_tokens`: a request never needs more, but few fit (the baseline S3 beats).
    case worstCase = "worst-case"
    /// vLLM-like: blocks as tokens come; when none are left, preempt the newest running request.
    case onDemand = "on-demand"
    /// Prompt plus the predictor's reserve quantile, packed first-fit-decreasing by that need; a request
    /// that outgrows it is extended from free blocks, else a victim is preempted (see `Scheduler`).
    case predicted
    /// Prompt plus the true output length (from the trace): the ceiling, for evaluation only.
    case oracle
}

/// The order in which waiting requests are considered.
public enum QueueOrder: Sendable, Equatable {
    /// First come, first served (preempted requests go back to the front).
    case fcfs
    /// Shortest predicted output first; a request that waited `agingSeconds` or more jumps ahead of
    /// every younger one (in arrival order), so none starves.
    case shortestPredictedFirst(agingSeconds: Double)
    /// RAGCache's cache-aware order: among the waiting requests admission considers (at least the first
    /// 64, even when fewer running slots are free), the one whose
    /// cached prefix (device hit plus blocks a lower tier can load) is largest relative to the tokens
    /// it still has to compute goes first (ties in arrival order). A request that waited
    /// `starvationSeconds` or more, and a preempted one, goes ahead of every younger one in arrival
    /// order, so none starves. Prompts given as tokens rather than block keys count as uncached.
    case cacheAware(starvationSeconds: Double)

    /// Whether this is the cache-aware order.
    public var isCacheAware: Bool {
        if case .cacheAware = self { true } else { false }
    }

    /// How long a request may wait before it goes ahead in arrival order; nil under FCFS.
    public var agingSeconds: Double? {
        switch self {
        case .fcfs: nil
        case let .shortestPredictedFirst(seconds), let .cacheAware(seconds): seconds
        }
    }
}

/// How admission picks among the first waiting requests.
public enum Packing: Sendable, Equatable {
    /// Strictly in queue order: stop at the first request that does not fit (head-of-line blocking).
    case inOrder
    /// Among the first `window` waiting requests, largest KV need first, each admitted if it fits.
    /// Under FCFS the oldest waiting request is tried before the packing (backfilling around it when
    /// it does not fit), so packing cannot starve it when the token budget admits one request a step.
    case firstFitDecreasing(window: Int)
}

/// The scheduler's limits and policies.
public struct SchedulerConfig: Sendable {
    /// Most sequences running at once (vLLM `max_num_seqs`).
    public var maxRunningSequences: Int = 256
    /// Most tokens (prefill chunks plus decodes) in one step (vLLM `max_num_batched_tokens`).
    public var maxBatchedTokens: Int = 8192
    /// Stall-free batching: in a step that carries decodes, decodes plus prefill chunks stay within this
    /// budget (prefill gets at least one block). nil lets prefill chunks take all of `maxBatchedTokens`
    /// (vLLM's rule). Decodes are always planned before prefill chunks.
    public var stallFree: StallFreeBudget? = nil
    /// The request's `max_tokens` when a submission does not say.
    public var defaultMaxTokens: Int = 4096
    public var reservation: ReservationPolicy = .onDemand
    public var order: QueueOrder = .fcfs
    /// Admission packing; nil picks by policy: first-fit-decreasing (window 64) for `predicted` and
    /// `oracle`, in order for the others.
    public var packing: Packing? = nil
    /// Blocks kept free at admission under `on-demand`, so running requests can grow (vLLM's 1%).
    public var watermarkFraction: Double = 0.01
    /// Under `predicted`, how far a request that outgrew its reservation is extended at once, as a
    /// fraction of its predicted reserve (at least one block).
    public var extensionFraction: Double = 0.5
    /// Under `predicted` and `oracle`: admit by the projected KV curve instead of static reservations.
    /// A request's reservation (prompt + predicted output) is then not held from the start: it holds its
    /// prompt, gains blocks as it decodes, and frees everything at its predicted end. A request is
    /// admitted when the sum of every running request's projected length stays within the cache at
    /// every future step until the last predicted end (the peak is checked just before each predicted
    /// finish). With exact lengths (oracle) nothing is ever preempted; with predictions, a request
    /// that outgrows its reservation extends it by `extensionFraction` and takes free blocks, and a
    /// victim is preempted only when the cache has none. `false` reserves the whole
    /// prompt + predicted output at admission (S3's static reservation).
    public var projectedAdmission = true
    /// A waiting request is predicted again when it is considered for admission and the predictor has
    /// learnt from this many finished requests since (or from any, if it was predicted before the first).
    public var repredictAfterObservations = 32
    /// Under projected admission, a request that outgrew its prediction and finds no free block waits
    /// (keeps its KV, skips steps) when another running request is predicted to end within this many
    /// steps; otherwise a victim is preempted. 0 always preempts.
    public var stallHorizonSteps = 512

    public init(reservation: ReservationPolicy = .onDemand) {
        self.reservation = reservation
    }

    /// The packing in effect.
    public var effectivePacking: Packing {
        if let packing { return packing }
        switch reservation {
        case .predicted, .oracle: return .firstFitDecreasing(window: 64)
        case .worstCase, .onDemand: return .inOrder
        }
    }
}
