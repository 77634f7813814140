import KVCache
import KVPlan
import KVScheduler
import KVTiers

/// The serving loop every engine runs, written once, and the one place where the scheduler, its cache
/// manager, the tiers below the device (`ServingTiers`) and an engine are wired: requests go in with
/// `submit`; each `step(now:)` asks the `Scheduler` for a plan, performs its swap copies (a
/// `TierSwapSpace`, when the tiers have one), lets the engine execute it, decides which sampled tokens
/// end their request, and reports the outcome back to the scheduler; `finished` lists the requests the
/// step finished.
///
/// The step's tokens complete at `now` plus the step's duration, which the outcome gives through
/// `duration` (the modelled engine's outcome is its modelled seconds; 0 for an engine whose caller
/// keeps its own clock).
///
/// A request stops at its `maxTokens` (the scheduler's `defaultMaxTokens` when nil), at its
/// `knownOutputTokens` (a trace's true length, at least 1) when it has one, or when the engine sampled
/// one of `stopTokens`. The engine's outcome gives the sampled token ids through `sampledTokens` (nil for
/// an engine that prices steps rather than samples, such as the modelled one).
///
/// Built with tiers, the loop sets the cache's `evictionObserver` and `lowerTierEvents` and the
/// scheduler's `prefixLoadSource` and `swapSpace` (see `ServingTiers`): prefix loads happen at admission,
/// committed prompt blocks are reported to the source, evicted blocks go down. The loop adds no policy
/// of its own. Contract: a step that throws has left the plan's requests as the failing
/// part left them; the caller abandons the run. Cost: O(plan) per step beyond the scheduler and the
/// engine; one dictionary entry per live request, and the sampled tokens until `take`. Single-threaded,
/// like the scheduler.
public final class ServingLoop<Engine: KVEngine> {
    /// Why a step failed.
    public enum Failure: Error {
        case scheduler(SchedulerError)
        case engine(Engine.Failure)
        case swap(TierError)
    }

    public let scheduler: Scheduler
    public private(set) var engine: Engine
    /// What lies below the device pool, wired at init (kept alive here).
    public let tiers: ServingTiers
    /// Moves swapped KV (the tiers' `swapCopies`); nil: the scheduler preempts by recompute, or its swaps
    /// move no bytes.
    public let swapSpace: TierSwapSpace?
    /// Token ids that end a request when sampled (EOS).
    public let stopTokens: Set<UInt32>
    /// Requests the last step (or the last planning that ran nothing) finished.
    public private(set) var finished: [FinishedRequest] = []
    /// Tokens sampled per request, finished ones included until `take` hands them over (only when the
    /// engine's outcome carries token ids).
    public private(set) var generated: [SequenceID: [UInt32]] = [:]

    private let sampledTokens: (Engine.StepOutcome) -> [UInt32]?
    private let duration: (Engine.StepOutcome) -> Double
    /// Per live request: the tokens after which it stops, and how many it produced.
    private var limit: [SequenceID: (stopAt: Int, produced: Int)] = [:]
    private var stops: [Bool] = []
    private var sampledIDs: [SequenceID] = []

    /// - Parameters:
    ///   - scheduler: plans the steps over its cache manager (the engine's).
    ///   - engine: executes them.
    ///   - tiers: wired into the scheduler and its cache (default: none); a `TierSwapSpace` among them
    ///     has its copies performed before each step.
    ///   - stopTokens: token ids that end a request.
    ///   - duration: the seconds a step outcome took (default 0).
    ///   - sampledTokens: the token ids a step outcome sampled, in `StepPlan.samplerCount` order, or nil.
    public init(scheduler: Scheduler, engine: Engine, tiers: ServingTiers = ServingTiers(), stopTokens: Set<UInt32> = [],
                duration: @escaping (Engine.StepOutcome) -> Double = { _ in 0 },
                sampledTokens: @escaping (Engine.StepOutcome) -> [UInt32]?) {
        self.duration = duration
        self.scheduler = scheduler
        self.engine = engine
        self.tiers = tiers
        self.swapSpace = tiers.swapCopies
        self.stopTokens = stopTokens
        self.sampledTokens = sampledTokens
        tiers.wire(scheduler)
    }

    /// No request waiting or running.
    public var isIdle: Bool { scheduler.isIdle }

    /// Queues `request`. O(1) plus the scheduler's admission bookkeeping.
    /// - Throws: the scheduler's refusal (a duplicate id, ...); nothing is queued then.
    public func submit(_ request: SchedulerRequest) throws(Failure) {
        do { try scheduler.submit(request) } catch { throw .scheduler(error) }
        var stopAt = request.maxTokens ?? scheduler.config.defaultMaxTokens
        if let known = request.knownOutputTokens { stopAt = min(stopAt, max(1, known)) }
        limit[request.id] = (max(1, stopAt), 0)
    }

    /// One step at time `now`: plan, swap, execute, complete (at `now` + the outcome's duration). Returns
    /// the plan and the engine's outcome, or nil when the scheduler had nothing to run now (requests it
    /// could never fit are in `finished`).
    @discardableResult
    public func step(now: Double) throws(Failure) -> (plan: StepPlan, outcome: Engine.StepOutcome)? {
        guard let plan = try plan(now: now) else { return nil }
        let outcome = try execute(plan)
        try complete(plan, tokens: sampledTokens(outcome), now: now + duration(outcome))
        return (plan, outcome)
    }

    // The three phases of `step`, for a driver that runs its own clock between them (the modelled engine
    // prices repeated decode steps before completing them as one).

    /// Phase 1: the scheduler's plan at `now`, or nil when it has nothing to run now (requests that
    /// planning finished, such as those that can never fit, are in `finished` then).
    public func plan(now: Double) throws(Failure) -> StepPlan? {
        let plan: StepPlan
        do { plan = try scheduler.schedule(now: now) } catch { throw .scheduler(error) }
        if plan.isEmpty {
            collectFinished()
            return nil
        }
        return plan
    }

    /// Phase 2: the plan's swaps (with a `TierSwapSpace`), then the engine's execution.
    public func execute(_ plan: StepPlan) throws(Failure) -> Engine.StepOutcome {
        if let swapSpace {
            do { try swapSpace.perform(plan) } catch { throw .swap(error) }
        }
        do { return try engine.execute(plan) } catch { throw .engine(error) }
    }

    /// Tokens `id` may still produce before its limit stops it (0 for an id not live here). O(1).
    public func remainingTokens(_ id: SequenceID) -> Int {
        limit[id].map { max(0, $0.stopAt - $0.produced) } ?? 0
    }

    /// Phase 3: decides the stops of the plan's sampled tokens (`tokens`: their ids, nil when the engine
    /// samples none) and reports them to the scheduler at `now`. With `steps` > 1 the plan (decodes only)
    /// ran that many identical steps, each decode producing `steps` tokens (`tokens` must then be nil);
    /// a decode stops when the last of them reaches its limit. O(sampled tokens).
    public func complete(_ plan: StepPlan, tokens: [UInt32]?, steps: Int = 1, now: Double) throws(Failure) {
        sampledIDs.removeAll(keepingCapacity: true)
        for p in plan.prefills where p.samples { sampledIDs.append(p.id) }
        for d in plan.decodes { sampledIDs.append(d.id) }
        let repeated = steps > 1 && plan.prefills.isEmpty && tokens == nil
        stops.removeAll(keepingCapacity: true)
        let produced = repeated ? steps : 1
        for (i, id) in sampledIDs.enumerated() {
            var stop = true   // an id this loop was not given stops at once
            if let e = limit.index(forKey: id) {   // one hash probe, the entry updated in place
                limit.values[e].produced += produced
                stop = limit.values[e].produced >= limit.values[e].stopAt
            }
            if let tokens, i < tokens.count {
                generated[id, default: []].append(tokens[i])
                stop = stop || stopTokens.contains(tokens[i])
            }
            stops.append(stop)
        }
        do {
            if repeated {
                try scheduler.completeRepeated(steps: steps, stops: stops, now: now)
            } else {
                try scheduler.complete(stops: stops, tokenIDs: tokens, now: now)
            }
        } catch { throw .scheduler(error) }
        collectFinished()
    }

    /// Forgets the finished requests' stop counts and tokens (`generated` keeps a finished request's
    /// tokens until `take`); copies the scheduler's list.
    private func collectFinished() {
        finished = scheduler.finished
        for f in finished { limit[f.id] = nil }
    }

    /// The tokens sampled for `id` (finished or not), handed over and forgotten.
    public func take(_ id: SequenceID) -> [UInt32] { generated.removeValue(forKey: id) ?? [] }
}

extension ServingLoop where Engine.StepOutcome == [UInt32] {
    /// A loop over an engine whose outcome is the sampled token ids (the reference engine).
    public convenience init(scheduler: Scheduler, engine: Engine, tiers: ServingTiers = ServingTiers(),
                            stopTokens: Set<UInt32> = []) {
        self.init(scheduler: scheduler, engine: engine, tiers: tiers, stopTokens: stopTokens) { $0 }
    }
}

extension ServingLoop where Engine.StepOutcome == Double {
    /// A loop over an engine whose outcome is the step's (modelled) seconds and that samples no token
    /// ids: requests stop at their known output length or `maxTokens`.
    public convenience init(scheduler: Scheduler, engine: Engine, tiers: ServingTiers = ServingTiers()) {
        self.init(scheduler: scheduler, engine: engine, tiers: tiers, duration: { $0 }, sampledTokens: { _ in nil })
    }
}
