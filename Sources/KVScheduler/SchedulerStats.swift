import KVCache
import KVPlan

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
