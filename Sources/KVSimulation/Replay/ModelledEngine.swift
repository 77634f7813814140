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
    /// Pensieve's per-conversation retention (`ConversationRetention`) with this policy instead of the
    /// device pool's prefix cache; `hostTierBytes` is then its host memory. nil: the prefix cache.
    public var retention: PensieveRetention.Policy? = nil
    /// The retention's ahead-of-time swapping threshold: the free share of the pool below which it
    /// moves chunks to the host, in 0...1.
    public var retentionSwapThreshold = 0.25
    /// Report the conversations' history figures (`ConversationRunReport`); always on with a retention.
    public var reportsConversations = false
    /// Charge each block copied down to host memory (the host tier's write-backs, the retention's moves)
    /// to the host link of the step that evicts it, as loads are; otherwise only loads are charged (the
    /// copies down are taken to overlap the compute).
    public var chargesHostWrites = false
    /// Check the cache's and the retention's invariants after every step and finish (tests); a
    /// broken one ends the run with `ModelledRunError.invariant`.
    public var validatesEveryStep = false

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
    /// `validatesEveryStep` found a broken invariant (a bug).
    case invariant(String)

    public var description: String {
        switch self {
        case let .invalidConfig(m): return "invalid configuration: \(m)"
        case let .scheduler(e): return "scheduler error: \(e)"
        case let .stalled(t, w, r): return "no progress at modelled t=\(t)s with \(w) waiting and \(r) running"
        case let .invariant(m): return m
        }
    }
}

/// A discrete-event engine that executes the scheduler's plans without a GPU: each step's duration
/// comes from `RooflineCostModel` (through `ModelledStep`, its `KVEngine`), requests arrive at their trace times, and each request stops when
/// it has produced its true output length, clipped to `maxTokens` and at least 1 (a trace's 0-token
/// failures still cost their prefill). Every time it reports is modelled.
///
/// With `ModelledRunConfig.retention`, Pensieve's per-conversation retention (`ConversationRetention`)
/// keeps the conversations' context instead of the pool's prefix cache: the loop tells it each plan
/// (`settle`) and each finished request (`finished`), and the step pays its host-link copies
/// (`StepHostCopies`; with `chargesHostWrites`, the host tier's write-backs too).
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
        guard (0...1).contains(config.retentionSwapThreshold) else { throw .invalidConfig("the swap threshold must be in 0...1") }
        guard config.capacityBlocks >= 1 else { throw .invalidConfig("the KV budget holds no block") }
        guard config.maxTokens >= 1 else { throw .invalidConfig("maxTokens must be at least 1") }
        let cache: KVCacheManager
        do {
            var cacheConfig = KVCacheConfig(blockTokens: config.blockTokens, capacityBlocks: config.capacityBlocks,
                                            enablePrefixCaching: config.retention == nil, policy: config.evictionPolicy,
                                            recomputeCost: costModel.recomputeCost)
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
        let blockBytes = Double(config.model.kvBytesPerToken * config.blockTokens)
        let turns = config.retention != nil || config.reportsConversations
            ? ConversationTurns(requests, blockTokens: config.blockTokens) : nil
        var retention: ConversationRetention? = nil
        if let policy = config.retention, let turns {
            do {
                retention = try ConversationRetention(
                    policy: policy, capacityBlocks: config.capacityBlocks, hostBlocks: Int(config.hostTierBytes / blockBytes),
                    blockTokens: config.blockTokens, swapThreshold: config.retentionSwapThreshold, costModel: costModel,
                    promptTokens: requests.map(\.inputTokens), turns: turns, chargesMoves: config.chargesHostWrites)
            } catch { throw .invalidConfig(error.description) }
            tiers.prefixLoadSource = retention
        } else if config.hostTierBytes > 0 {
            let tier = HostPrefixTier(capacityBlocks: Int(config.hostTierBytes / blockBytes))
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
        func check() throws(ModelledRunError) {
            guard config.validatesEveryStep else { return }
            do { try cache.validate() } catch { throw .invariant("the device pool: \(error)") }
            do { try retention?.validate(heldBlocks: cache.capacityBlocks - cache.freeBlockCount) } catch {
                throw .invariant(error.description)
            }
        }
        func recordFinished(_ finished: [FinishedRequest]) throws(ModelledRunError) {
            metrics.record(finished: finished)
            for f in finished {
                arrivals.finished(Int(f.id.raw), at: f.finishTime)
                if f.reason != .capacity {
                    retention?.finished(Int(f.id.raw), now: f.finishTime, heldBlocks: cache.capacityBlocks - cache.freeBlockCount)
                }
            }
            if !finished.isEmpty { try check() }
        }
        let kvPerBlock = blockBytes
        // Conversations' figures: each request's (device, host) tokens at its first admission.
        var given: [(gpu: Int32, host: Int32)] = turns == nil ? [] : Array(repeating: (-1, -1), count: n)
        // The serving loop decides the stops (each request's true output, clipped to maxTokens, at least
        // 1); this event loop adds the arrivals and the fast-forward of repeated decode steps around it.
        let loop = ServingLoop(scheduler: scheduler,
                               engine: ModelledStep(costModel: costModel, kvBytesPerBlock: kvPerBlock,
                                                    copies: retention ?? (config.chargesHostWrites ? hostTier : nil)),
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
            retention?.clock = t
            do { planned = try loop.plan(now: t) } catch { throw Self.error(error) }
            guard let plan = planned else {
                // No `complete` follows: collect what planning finished (requests that cannot fit).
                try recordFinished(loop.finished)
                let due = arrivals.nextTime
                if due < .infinity {
                    t = max(t, due)
                    continue
                }
                if scheduler.isIdle { break }
                throw .stalled(time: t, waiting: scheduler.waitingCount, running: scheduler.runningCount)
            }
            if let retention {
                retention.settle(plan, heldBlocks: cache.capacityBlocks - cache.freeBlockCount, now: t)
                try check()
            }
            if !given.isEmpty { noteAdmissions(plan, retention: retention, into: &given) }
            var dt: Double
            do { dt = try loop.execute(plan) } catch { throw Self.error(error) }
            if retention == nil {
                for l in plan.prefixLoads { metrics.tierLoadBytes += Double(l.blocks.count) * kvPerBlock }
            }
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
                step.hostTransferBytes = 0   // the copies happen once, in the first step
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
            try recordFinished(loop.finished)
        }
        let s = scheduler.stats
        var report = metrics.report(policy: config.scheduler.reservation.rawValue, start: start, stats: s)
        report.evictionPolicy = config.evictionPolicy.rawValue
        if let turns {
            var c = ConversationRunReport(retention: config.retention?.rawValue ?? "prefix-cache", conversations: turns.conversations)
            for i in 0 ..< n where given[i].gpu >= 0 {
                c.addTurn(history: turns.historyTokens[i], gpu: Int(given[i].gpu), host: Int(given[i].host))
            }
            if let r = retention?.retention.counters {
                c.swappedBlocks = r.swappedChunks
                c.aheadOfTimeBlocks = r.aheadOfTimeChunks
                c.droppedBlocks = r.droppedChunks
            }
            if let retention {
                // The scheduler counts the retention's GPU chunks among its loads; the host's are these.
                report.tierLoadTokens = retention.totals.hostHitTokens
                report.tierLoadBytes = Double(retention.totals.hostHitTokens / config.blockTokens) * kvPerBlock
                c.hostLinkBytes = Double(retention.hostLinkBlocks) * kvPerBlock
            } else if let hostTier {
                c.hostLinkBytes = Double(hostTier.stats.stored + hostTier.stats.loadedBlocks) * kvPerBlock
            }
            report.conversations = c
        }
        if let hostTier, let admission {
            report.hostTier = HostTierRunReport(capacityBlocks: hostTier.capacityBlocks, loadsPay: admission.loadsPay,
                                                loadSecondsPerBlock: admission.loadSecondsPerBlock,
                                                recomputeSecondsPerBlock: admission.recomputeSecondsPerBlock,
                                                stats: hostTier.stats, heldBlocks: hostTier.count)
        }
        return report
    }
}

extension ModelledEngine {
    /// Records, for each request whose first prefill `plan` holds, the tokens the device and host
    /// memory supplied at its admission: the retention's GPU and host chunks, or the prefix cache's
    /// device hit (the chunk's context less this plan's loads for it) and host loads.
    /// O(prefills x prefix loads) per plan, only when conversations are reported.
    func noteAdmissions(_ plan: StepPlan, retention: ConversationRetention?, into given: inout [(gpu: Int32, host: Int32)]) {
        for p in plan.prefills {
            let i = Int(p.id.raw)
            guard given[i].gpu < 0 else { continue }
            if let retention {
                let g = retention.given(i) ?? (0, 0)   // taken at `load` or `settle`
                given[i] = (Int32(g.gpu), Int32(g.host))
            } else {
                var loaded = 0
                for l in plan.prefixLoads where l.id == p.id { loaded += l.tokens }
                given[i] = (Int32(p.contextBefore - loaded), Int32(loaded))
            }
        }
    }
}
