/// A transfer that the workers run in steps and that device copies report to, without a closure per
/// step or per copy: the tier manager keeps its loads and stores as pooled subclasses (`LoadJob`,
/// `StoreJob`) and queues `(job, step)` pairs, and a `DeviceMemory` reports each copy with
/// `copyFinished(tag:ok:)` on the job it was given. Queuing a step or handing out a copy allocates
/// nothing.
///
/// Contract: `run(step:expired:)` runs on a transfer worker, once per queued step; `copyFinished` is
/// called exactly once per copy, from any thread, after the copy has completed or failed. The base class
/// does nothing in either (a subclass decides what a step and a tag mean).
public class TransferJob: @unchecked Sendable {
    // Sendable: subclasses guard their mutable state with the tier manager's lock.
    init() {}

    // The fields below are read and written under the tier manager's lock only.
    /// The tier manager, held strongly from the moment the job is handed out until it has `finished`
    /// and no step of it is queued or running (as a queued closure capturing the manager would hold it),
    /// then dropped, so that a job resting in the pool does not keep its manager alive. Whoever drops it
    /// keeps the reference until it has left the manager's lock. nil: the job is idle (reusable once its
    /// handle is complete and the caller has dropped it).
    var keepAlive: AnyObject?
    /// Steps queued or running; each one ends by taking the lock to count itself out, which orders its
    /// reads of the job's plan before a later reuse of the job.
    var stepsQueued = 0
    /// Every block has completed (or none was started).
    var finished = false

    /// Runs step `step`; `expired` asks only to clean up (the workers are stopping).
    func run(step: Int, expired: Bool) {}

    /// The device copy handed out with `tag` has finished (`ok`) or failed.
    public func copyFinished(tag: Int, ok: Bool) {}
}
