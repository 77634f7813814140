#if canImport(Glibc)
import KVCache
import Glibc
#endif

/// Which queue a transfer job waits in: loads the engine is waiting for go first.
public enum TransferPriority: Sendable { case high, low }

/// A small pool of worker threads (pthreads) that run transfer jobs: device<->host copies, disk writes
/// and reads. Two FIFO queues, high before low. A job submitted with a deadline that is dequeued after
/// it is called with `expired == true` and should only clean up (prefetch that came too late).
///
/// Thread-safe. `shutdown` (or deinit) finishes every queued job, then joins the workers.
public final class TransferWorkers: Sendable {
    public typealias Job = @Sendable (_ expired: Bool) -> Void
    private let core: WorkerQueue
    public var workerCount: Int { core.workerCount }

    /// Starts `workers` threads (1...64).
    public init(workers: Int = 2) throws(TierError) { core = try WorkerQueue(workers: workers) }

    /// Joins the workers after they finish the queued jobs.
    deinit { core.shutdown() }

    /// Queues `job`. O(1) amortized. After `shutdown`, the job runs inline with `expired == true`.
    public func submit(_ priority: TransferPriority, deadlineNanos: UInt64 = .max, _ job: @escaping Job) {
        core.submit(priority, deadlineNanos: deadlineNanos, job)
    }

    /// Queues step `step` of `job` (no allocation once the queue has grown); false, queuing nothing, after
    /// `shutdown`. O(1) amortized.
    func trySubmit(_ priority: TransferPriority, _ job: TransferJob, step: Int) -> Bool {
        core.trySubmit(priority, deadlineNanos: .max, .step(job, step))
    }

    /// Blocks until every queued and running job has finished.
    public func waitForTransfers() { core.waitForTransfers() }

    /// Runs every queued job, then stops and joins the workers (a worker calling it is detached instead of
    /// joined). Idempotent.
    public func shutdown() { core.shutdown() }
}

/// The queues and threads behind `TransferWorkers`; the workers hold it, the engine's deinit stops it.
final class WorkerQueue: @unchecked Sendable {
    // Sendable: queues and flags are only touched under `cond`'s mutex.
    typealias Job = TransferWorkers.Job
    /// A queued unit: a closure, or a step of a pooled job (stored inline, no allocation).
    enum Work {
        case closure(Job)
        case step(TransferJob, Int)

        func run(expired: Bool) {
            switch self {
            case .closure(let job): job(expired)
            case .step(let job, let step): job.run(step: step, expired: expired)
            }
        }
    }
    private struct Entry { var deadline: UInt64; var work: Work }

    private let cond = ConditionLock()
    private var high: [Entry] = [], highHead = 0
    private var low: [Entry] = [], lowHead = 0
    private var running = 0
    private var stopping = false
    private var threads: [pthread_t] = []
    let workerCount: Int

    init(workers: Int) throws(TierError) {
        guard (1 ... 64).contains(workers) else { throw .invalidArgument("workers must be in 1...64") }
        workerCount = workers
        // Room for the steps of a few large loads and stores queued at once, so that a burst larger than
        // the warm-up's does not grow the queues in steady state.
        high.reserveCapacity(Self.reservedEntries)
        low.reserveCapacity(Self.reservedEntries)
        for _ in 0 ..< workers {
            var t = pthread_t()
            let ctx = Unmanaged.passRetained(self).toOpaque()
            let rc = pthread_create(&t, nil, { ctx in
                let engine = Unmanaged<WorkerQueue>.fromOpaque(ctx!).takeRetainedValue()
                engine.workLoop()
                return nil
            }, ctx)
            if rc != 0 {
                Unmanaged<WorkerQueue>.fromOpaque(ctx).release()
                shutdown()
                throw .system(call: "pthread_create", errno: rc)
            }
            threads.append(t)
        }
    }

    func submit(_ priority: TransferPriority, deadlineNanos: UInt64 = .max, _ job: @escaping Job) {
        if !trySubmit(priority, deadlineNanos: deadlineNanos, .closure(job)) { job(true) }
    }

    /// Queues `work`; false (nothing queued) once stopping.
    func trySubmit(_ priority: TransferPriority, deadlineNanos: UInt64, _ work: Work) -> Bool {
        cond.withLock {
            guard !stopping else { return false }
            if priority == .high { high.append(Entry(deadline: deadlineNanos, work: work)) }
            else { low.append(Entry(deadline: deadlineNanos, work: work)) }
            cond.signal()
            return true
        }
    }

    func waitForTransfers() {
        cond.withLock {
            while running > 0 || highHead < high.count || lowHead < low.count { cond.wait() }
        }
    }

    func shutdown() {
        let toJoin: [pthread_t] = cond.withLock {
            stopping = true
            cond.broadcast()
            let t = threads
            threads = []
            return t
        }
        // The owner's last reference may be dropped by a job, so deinit (and this) can run on a worker:
        // that thread cannot join itself, it is detached and exits after its current job.
        let me = pthread_self()
        for t in toJoin {
            if pthread_equal(t, me) != 0 { pthread_detach(t) } else { pthread_join(t, nil) }
        }
    }

    private func next() -> Entry? {
        cond.withLock { () -> Entry? in
            while true {
                if let e = Self.popFront(&high, &highHead) ?? Self.popFront(&low, &lowHead) {
                    running += 1
                    return e
                }
                if stopping { return nil }
                cond.wait()
            }
        }
    }

    /// The first entry of a FIFO kept as an array and a head index (no element moves per pop); the array
    /// is emptied, keeping its capacity, once the head reaches its end; the popped place drops its
    /// references at once (a pooled job is free again as soon as its steps have run). O(1) amortised, no
    /// allocation.
    private static func popFront(_ queue: inout [Entry], _ head: inout Int) -> Entry? {
        guard head < queue.count else { return nil }
        let e = queue[head]
        queue[head] = Entry(deadline: 0, work: .closure(Self.popped))
        head += 1
        if head == queue.count {
            queue.removeAll(keepingCapacity: true)
            head = 0
        }
        return e
    }

    /// Entries each queue holds before it grows.
    static let reservedEntries = 1024

    /// What a popped place holds until the array is emptied: a closure without captures (no allocation).
    private static let popped: Job = { _ in }

    private func workLoop() {
        while runNext() {
            cond.withLock { running -= 1; cond.broadcast() }
        }
    }

    /// Runs one job; returns false when stopping. The job (and whatever it captured) is released when
    /// this returns, before `running` drops: once `drain` returns, no worker still holds a job's captures.
    @inline(never)
    private func runNext() -> Bool {
        guard let e = next() else { return false }
        e.work.run(expired: e.deadline != .max && KVClock.monotonicNanos() > e.deadline)
        return true
    }
}
