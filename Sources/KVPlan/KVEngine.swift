/// What executes the scheduler's step plans: the KV copies a plan lists (swap-outs, swap-ins, prefix
/// loads) before the step, then the compute of its prefills and decodes. The scheduler plans, the
/// engine executes, and the runtime feeds each outcome back (`Scheduler.complete`).
///
/// An engine states its own cost and failure in its contract; `execute` must not change the plan's
/// bookkeeping (block tables belong to the cache manager).
public protocol KVEngine {
    /// What one executed step yields: a modelled duration, sampled tokens, ...
    associatedtype StepOutcome
    associatedtype Failure: Error

    /// Runs every copy and computation of `plan`.
    mutating func execute(_ plan: StepPlan) throws(Failure) -> StepOutcome
}
