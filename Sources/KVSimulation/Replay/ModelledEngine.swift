import KVCache
import KVData
import KVPlan
import KVRuntime
import KVScheduler

/// Settings of one modelled run.
public struct ModelledRunConfig: Sendable {
    public var model: ModelSpec
    public var hardware: HardwareSpec
    public var efficiency = RooflineCostModel.Efficiency()
    /// KV-cache budget in bytes (over all tensor-parallel GPUs).
    public var kvBytes: Double
    public var blockTokens = 16
    /// `max_tokens` of every request; true outputs are clipped to it.
    public var maxTokens = 4096
    public var scheduler = SchedulerConfig()
    /// Host memory for swapping preempted KV, in bytes; 0 preempts by recompute only.
    public var swapBytes: Double = 0
    /// Host memory for a prefix tier under the device cache (`HostPrefixTier`), in bytes; 0 turns it
    /// off. Evicted prompt blocks go there; a later request loads them over the host link instead of
    /// recomputing them when `HostTierAdmission` says the load pays.
    public var hostTierBytes: Double = 0
    /// Run a decode-only plan's identical repetitions as one event (exact; off only to check that).
    public var fastForward = true
    /// Requests of one session (conversation turns) arrive in order, each only after the previous one
    /// finished plus `thinkSeconds`; nil lets them arrive at their own times.
    public var sessionThinkSeconds: Double? = 0
    /// Eviction order of the device pool's cached blocks (`pgdsf` and `pgdsf-probation` price blocks
    /// with the cost model's recompute cost) and its tunables.
    public var evictionPolicy: EvictionPolicyKind = .lru
    public var policyParameters = EvictionPolicyKind.Parameters()

    public init(model: ModelSpec, hardware: HardwareSpec, kvBytes: Double) {
        self.model = model
        self.hardware = hardware
        self.kvBytes = kvBytes
    }

    /// Blocks the KV budget holds.
    public var capacityBlocks: Int { Int(kvBytes / Double(model.kvBytesPerToken * blockTokens)) }
}

/// Errors of a modelled run.
public enum ModelledRunError: Error, Equatable, CustomStringConvertible {
    case invalidConfig(String)
    case scheduler(SchedulerError)
    /// Requests remain but the scheduler planned nothing and no arrival is due (a scheduler bug).
    case stalled(time: Double, waiting: Int, running: Int)

    public var description: String {
        switch self {
        case let .invalidConfig(m): return "invalid configuration: \(m)"
        case let .scheduler(e): return "scheduler error: \(e)"
        case let .stalled(t, w, r): return "no progress at modelled t=\(t)s with \(w) waiting and \(r) running"
        }
    }
}

/// A discrete-event engine that executes the scheduler's plans without a GPU: each step's duration
/// comes from `RooflineCostModel` (through `ModelledStep`, its `KVEngine`), requests arrive at their trace times, and each request stops when
/// it has produced its true output length, clipped to `maxTokens` and at least 1 (a trace's 0-token
/// failures still cost their prefill). Every time it reports is modelled.
///
/// The event loop jumps straight to the next arrival when nothing can run. Cost: O(steps x batch);
/// per step it allocates nothing beyond the scheduler's reused buffers.
public final class ModelledEngine {
    public let config: ModelledRunConfig
    public let costModel: RooflineCostModel

    public init(config: ModelledRunConfig) {
        self.config = config
        self.costModel = RooflineCostModel(model: config.model, hardware: config.hardware, efficiency: config.efficiency)
    }

    /// The run's error for a failure of its serving loop (the modelled step itself never fails).
    private static func error(_ failure: ServingLoop<ModelledStep>.Failure) -> ModelledRunError {
        switch failure {
        case .scheduler(let e): .scheduler(e)
        case .swap(let e): .invalidConfig("swap: \(e)")
        }
    }

    /// Runs every request of `requests` (arrivals in seconds, any order) to completion.
    /// - Parameter predictor: used by the scheduler (and fed true lengths); nil predicts `maxTokens`.
    /// - Returns: the run's metrics.
    public func run(_ requests: [TraceRequest], predictor: (any OutputLengthPredictor)?) throws(ModelledRunError) -> ModelledRunReport {
        do { try config.validateLimits() } catch { throw .invalidConfig(error.description) }
        guard config.capacityBlocks >= 1 else { throw .invalidConfig("the KV budget holds no block") }
        guard config.maxTokens >= 1 else { throw .invalidConfig("maxTokens must be at least 1") }
        let cache: KVCacheManager
        do {
            var cacheConfig = KVCacheConfig(blockTokens: config.blockTokens, capacityBlocks: config.capacityBlocks,
                                            policy: config.evictionPolicy, recomputeCost: costModel.recomputeCost)
            cacheConfig.policyParameters = config.policyParameters
            cache = try KVCacheManager(cacheConfig)
        } catch { throw .invalidConfig("\(error)") }
        let scheduler = Scheduler(config: config.scheduler, cache: cache, predictor: predictor)
        // The tiers below the device pool, which the serving loop wires: swap room counted in blocks, and
        // the keys-only host tier (a prefix source only when its loads pay).
        var tiers = ServingTiers()
        if config.swapBytes > 0 {
            tiers.swapSpace = CountingSwapSpace(capacityBlocks: Int(config.swapBytes / Double(config.model.kvBytesPerToken * config.blockTokens)))
        }
        var hostTier: HostPrefixTier? = nil
        var admission: HostTierAdmission? = nil
        if config.hostTierBytes > 0 {
            let tier = HostPrefixTier(capacityBlocks: Int(config.hostTierBytes / Double(config.model.kvBytesPerToken * config.blockTokens)))
            let rule = HostTierAdmission(costModel: costModel, blockTokens: config.blockTokens,
                                         referenceChunkTokens: config.scheduler.maxBatchedTokens)
            tiers.evictionObserver = tier
            if rule.loadsPay { tiers.prefixLoadSource = tier }
            hostTier = tier
            admission = rule
        }

        let n = requests.count
        var arrivals = ArrivalQueue(requests, gateSessions: config.sessionThinkSeconds != nil,
                                    thinkSeconds: config.sessionThinkSeconds ?? 0)
        var metrics = RunMetricsRecorder(requests: n)
        var t = n > 0 ? max(0, arrivals.nextTime) : 0
        let start = t
        func recordFinished(_ finished: [FinishedRequest]) {
            metrics.record(finished: finished)
            for f in finished { arrivals.finished(Int(f.id.raw), at: f.finishTime) }
        }
        let kvPerBlock = Double(config.model.kvBytesPerToken * config.blockTokens)
        // The serving loop decides the stops (each request's true output, clipped to maxTokens, at least
        // 1); this event loop adds the arrivals and the fast-forward of repeated decode steps around it.
        let loop = ServingLoop(scheduler: scheduler, engine: ModelledStep(costModel: costModel, kvBytesPerBlock: kvPerBlock),
                               tiers: tiers)
        let capacity = Double(cache.capacityBlocks)

        while true {
            while let (i, arrival) = arrivals.pop(upTo: t) {
                let r = requests[i]
                let keys = TracePromptKeys.keys(for: r, index: i, blockTokens: config.blockTokens)
                let req = SchedulerRequest(id: SequenceID(Int64(i)), prompt: .keys(keys, tokenCount: r.inputTokens),
                                           maxTokens: config.maxTokens, arrival: arrival, promptText: r.promptText,
                                           templateKey: r.hashIDs.first, modelID: r.model,
                                           knownOutputTokens: max(1, min(config.maxTokens, r.outputTokens)))
                do { try loop.submit(req) } catch { throw Self.error(error) }
            }
            let planned: StepPlan?
            do { planned = try loop.plan(now: t) } catch { throw Self.error(error) }
            guard let plan = planned else {
                // No `complete` follows: collect what planning finished (requests that cannot fit).
                recordFinished(loop.finished)
                let due = arrivals.nextTime
                if due < .infinity {
                    t = max(t, due)
                    continue
                }
                if scheduler.isIdle { break }
                throw .stalled(time: t, waiting: scheduler.waitingCount, running: scheduler.runningCount)
            }
            var dt: Double
            do { dt = try loop.execute(plan) } catch { throw Self.error(error) }
            for l in plan.prefixLoads { metrics.tierLoadBytes += Double(l.blocks.count) * kvPerBlock }
            // A decode-only plan repeats unchanged until a request stops, needs a block, or an arrival
            // or aging deadline comes: run those steps in one go (same result, one event).
            var repeats = config.fastForward ? scheduler.repeatableDecodeSteps() : 0
            for d in plan.decodes where repeats > 0 { repeats = min(repeats, loop.remainingTokens(d.id)) }
            let used = capacity - Double(cache.freeBlockCount)
            let work = loop.engine.work
            var steps = 1
            if repeats > 1 {
                let bound = min(arrivals.nextTime, scheduler.nextAgingDeadline)
                var step = work
                while steps < repeats && t + dt < bound {
                    step.advanceDecodes()
                    dt += costModel.stepSeconds(step)
                    steps += 1
                }
            }
            metrics.step(duration: dt, running: scheduler.runningCount, kvUtilization: used / capacity,
                         batchedTokens: work.batchedTokens)
            metrics.prefill(tokens: work.prefillTokens)
            t += dt
            do { try loop.complete(plan, tokens: nil, steps: steps, now: t) } catch { throw Self.error(error) }
            recordFinished(loop.finished)
        }
        let s = scheduler.stats
        var report = metrics.report(policy: config.scheduler.reservation.rawValue, start: start, stats: s)
        report.evictionPolicy = config.evictionPolicy.rawValue
        if let hostTier, let admission {
            report.hostTier = HostTierRunReport(capacityBlocks: hostTier.capacityBlocks, loadsPay: admission.loadsPay,
                                                loadSecondsPerBlock: admission.loadSecondsPerBlock,
                                                recomputeSecondsPerBlock: admission.recomputeSecondsPerBlock,
                                                stats: hostTier.stats, heldBlocks: hostTier.count)
        }
        return report
    }
}
