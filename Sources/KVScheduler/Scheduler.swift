import KVCache
import KVPlan

/// Decides, step by step, which requests run on the engine: admission under a KV reservation policy,
/// chunked prefill under a token budget, decodes, and preemption when KV runs out.
///
/// Use: `submit` requests as they arrive; each step call `schedule(now:)`, run the returned plan,
/// then `complete(stops:now:)` with one stop flag per sampled token. Requests finished in a step
/// are listed in `finished` until the next `schedule`. Single-threaded, like the `KVCacheManager` it
/// drives.
///
/// Reservation (see `ReservationPolicy`): `worst-case` reserves `prompt + max_tokens` tokens of blocks
/// up front (through `allocate`'s lookahead); `on-demand` takes blocks one at a time as tokens need
/// them; `predicted` and `oracle` (the predictor's reserve quantile, or the true length) either admit
/// by the projected KV curve and grow block by block (`SchedulerConfig.projectedAdmission`, the
/// default) or reserve `prompt + reserve` up front (S3's static reservation). Prefix hits from the
/// cache count towards the need.
///
/// Outgrowing a reservation: a decoding request whose next token has no slot is extended from free
/// blocks (by `extensionFraction` of its reserve under `predicted`, one block otherwise). When the cache
/// cannot give even one block, a victim is preempted: under `predicted` and `oracle` the running
/// request with the fewest computed tokens (least work lost; the newest on ties), under the other
/// policies the newest admitted (vLLM's rule). The victim may be the grower itself. A request alone
/// in the cache that still cannot grow finishes with `FinishReason.capacity`. No request is admitted
/// in a step that preempted.
///
/// Cost per step: O(running + admitted candidates); it allocates nothing in steady state. The hot
/// stored properties skip dynamic exclusivity checks (`@exclusivity(unchecked)`): the type is
/// single-threaded by contract and never lends them across a call that could touch them again. Decode
/// tokens reach the cache lazily: `append`/`commit` for a decoding request are batched until it needs
/// a new block (blocks its output fills are published then); a preempted or finished request is
/// simply freed.
public final class Scheduler {
    public let config: SchedulerConfig
    public let cache: KVCacheManager
    /// Predicts output lengths for `predicted` (and for shortest-predicted-first); learns from
    /// finished requests. Without one, predictions fall back to `max_tokens`.
    public var predictor: (any OutputLengthPredictor)?
    /// Host room for swapping preempted requests' KV; nil preempts by recompute only.
    public var swapSpace: (any SwapSpace)?
    /// A lower tier that supplies prompt blocks missing from the device cache at admission; nil
    /// recomputes every miss.
    public var prefixLoadSource: (any PrefixLoadSource)?

    @exclusivity(unchecked)
    public internal(set) var stats = SchedulerStats()
    /// Requests finished since the last `schedule` call began.
    @exclusivity(unchecked)
    public internal(set) var finished: [FinishedRequest] = []
    /// The plan of the last `schedule` call.
    @exclusivity(unchecked)
    public internal(set) var plan = StepPlan()

    /// A request's reference-counted data, kept apart so the per-step state below copies as plain bytes.
    struct ColdEntry {
        var prompt: SchedulerRequest.Prompt
        var generatedIDs: [UInt32] = []
        var input: PredictionInput
    }

    /// A request's per-step state: plain values only (no reference counting when copied).
    struct Entry {
        var id: SequenceID
        var state: RequestState = .waiting
        var generation: UInt32 = 0
        var promptTokens: Int
        var maxTokens: Int
        var arrival: Double
        var arrivalSeq: Int
        var expectedOutput: Int
        /// Output tokens to reserve KV for at admission (grows with extensions).
        var reserveOutput: Int
        var knownOutput: Int?
        var generated = 0
        /// Tokens whose KV is computed (the scheduler's view; the cache lags by `pendingCommit`).
        var computed = 0
        /// Tokens to prefill in this admission: prompt plus output so far after a recompute.
        var contextTarget: Int
        /// Tokens the sequence's blocks can hold.
        var slotTokens = 0
        var pendingAppend = 0
        var pendingCommit = 0
        /// Tokens whose KV waits in host memory (swap preemption), 0 otherwise.
        var swappedTokens = 0
        var firstTokenTime: Double? = nil
        var preemptions = 0
        var registered = false
        var tokenIDs: Bool
        /// `observations` when its prediction was made.
        var predictedAt = 0
        /// Prompt tokens it found in the prefix cache at its last admission (blocks it may share).
        var hitTokens = 0
    }

    /// (expected, reserve) output tokens of a request under the configured policy.
    func predictOutput(_ input: PredictionInput, known: Int?) -> (Int, Int) {
        let maxTokens = input.maxTokens
        var expected = maxTokens, reserve = maxTokens
        switch config.reservation {
        case .oracle:
            let k = max(1, min(maxTokens, known ?? maxTokens))
            expected = k
            reserve = k
        case .worstCase, .onDemand, .predicted:
            if let predictor {
                let p = predictor.predict(input)
                expected = max(1, min(maxTokens, p.expected))
                reserve = max(1, min(maxTokens, max(p.reserve, p.expected)))
            }
        }
        if config.reservation == .worstCase { reserve = maxTokens }
        return (expected, reserve)
    }

    @exclusivity(unchecked)
    var entries: [Entry] = []
    @exclusivity(unchecked)
    var cold: [ColdEntry] = []
    var freeSlots: [Int32] = []
    var slotOf: [SequenceID: Int32] = [:]
    @exclusivity(unchecked)
    var running: [Int32] = []
    var queue = WaitingQueue()
    /// Arrival-ordered queue used for aging under shortest-predicted-first.
    var agingQueue = WaitingQueue()
    var arrivalCounter = 0
    @exclusivity(unchecked)
    var candidates: [Int32] = []
    /// Cache-aware order: (cached share, arrival, slot) of the candidates being ordered.
    var cacheAwareScratch: [(share: Double, arrival: Int, slot: Int32)] = []
    var finishScratch: [Int32] = []
    var finishReasons: [FinishReason] = []
    /// Running requests' projected (remaining tokens, current length), largest remaining first; built
    /// per admission pass under projected admission.
    @exclusivity(unchecked)
    var projection: [(remaining: Int, own: Int)] = []
    var projectionSorted = false
    /// KV tokens held now (blocks in use x block size), plus those admitted in this pass.
    var projectionHeld = 0
    /// Sum of `own` over `projection`.
    var projectionOwnSum = 0
    /// Sum over `projection` of remaining growth plus one block: with `projectionHeld`, a bound on the peak.
    var projectionGrowthSum = 0

    /// Whether admission follows the projected KV curve (see `SchedulerConfig.projectedAdmission`).
    var projected: Bool {
        config.projectedAdmission && (config.reservation == .predicted || config.reservation == .oracle)
    }
    @exclusivity(unchecked)
    var samplerSlots: [Int32] = []
    /// The `now` of the step being planned (finish times of requests dropped while planning).
    var planningNow = 0.0
    /// Outputs fed to the predictor so far: a waiting request predicted before the latest one is
    /// predicted again when it is next considered for admission (the predictor learns online).
    var observations = 0
    /// Bumped whenever the queue gains a request.
    var queueVersion = 0
    /// The conditions under which the last admission attempt admitted nothing; while none of them
    /// improves, admission is skipped (it would fail the same way).
    struct AdmissionMemo {
        var free: Int, running: Int, queueVersion: Int, budget: Int, observations: Int, deadline: Double
    }
    var admissionMemo: AdmissionMemo? = nil
    /// When the next waiting request reaches the aging bound (shortest-predicted-first, cache-aware),
    /// else infinity.
    public internal(set) var nextAgingDeadline = Double.infinity
    var completingNow = 0.0

    public init(config: SchedulerConfig, cache: KVCacheManager, predictor: (any OutputLengthPredictor)? = nil) {
        self.config = config
        self.cache = cache
        self.predictor = predictor
    }

    // MARK: - Queries

    /// Requests holding KV and scheduled each step.
    public var runningCount: Int { running.count }
    /// Requests waiting (new or preempted).
    public var waitingCount: Int { queue.count }
    /// Requests not finished.
    public var activeCount: Int { slotOf.count }
    /// True when nothing is queued or running.
    public var isIdle: Bool { slotOf.isEmpty }

    /// The state of `id`, or nil when it is unknown or finished.
    public func state(of id: SequenceID) -> RequestState? {
        slotOf[id].map { entries[Int($0)].state }
    }

    /// KV slots (tokens) the scheduler believes `id` holds; nil when it holds none. For invariant checks.
    public func reservedTokens(of id: SequenceID) -> Int? {
        guard let s = slotOf[id], entries[Int(s)].state == .running else { return nil }
        return entries[Int(s)].slotTokens
    }

    /// The predicted output of `id` (expected, reserve) as the scheduler uses it.
    public func prediction(of id: SequenceID) -> (expected: Int, reserve: Int)? {
        slotOf[id].map { (entries[Int($0)].expectedOutput, entries[Int($0)].reserveOutput) }
    }

    // MARK: - Submission

    /// Queues a request. O(log waiting) plus one prediction.
    /// - Throws: `duplicateRequest` when `id` is active, `invalidRequest` for an empty prompt or
    ///   `maxTokens < 1`. State is unchanged on error.
    public func submit(_ request: SchedulerRequest) throws(SchedulerError) {
        guard slotOf[request.id] == nil else { throw .duplicateRequest(request.id) }
        let promptTokens = request.prompt.tokenCount
        guard promptTokens > 0 else { throw .invalidRequest("empty prompt") }
        let maxTokens = request.maxTokens ?? config.defaultMaxTokens
        guard maxTokens >= 1 else { throw .invalidRequest("maxTokens must be at least 1") }
        if case let .keys(keys, n) = request.prompt, keys.count > n / max(1, cache.blockTokens) {
            throw .invalidRequest("\(keys.count) block keys for \(n) tokens")
        }
        if config.reservation == .oracle && request.knownOutputTokens == nil {
            throw .invalidRequest("the oracle policy needs knownOutputTokens")
        }
        let input = PredictionInput(promptTokens: promptTokens, promptText: request.promptText,
                                    templateKey: request.templateKey, modelID: request.modelID, maxTokens: maxTokens)
        let (expected, reserve) = predictOutput(input, known: request.knownOutputTokens)
        var tokenIDs = false
        if case .tokens = request.prompt { tokenIDs = true }
        var entry = Entry(id: request.id, promptTokens: promptTokens, maxTokens: maxTokens,
                          arrival: request.arrival, arrivalSeq: arrivalCounter,
                          expectedOutput: expected, reserveOutput: reserve, knownOutput: request.knownOutputTokens,
                          contextTarget: promptTokens, tokenIDs: tokenIDs)
        arrivalCounter += 1
        entry.predictedAt = observations
        let slot: Int32
        if let s = freeSlots.popLast() {
            slot = s
            let generation = entries[Int(s)].generation
            entries[Int(s)] = entry
            entries[Int(s)].generation = generation
            cold[Int(s)] = ColdEntry(prompt: request.prompt, input: input)
        } else {
            slot = Int32(entries.count)
            entries.append(entry)
            cold.append(ColdEntry(prompt: request.prompt, input: input))
        }
        slotOf[request.id] = slot
        stats.submitted += 1
        enqueue(slot)
    }

    func enqueue(_ slot: Int32) {
        queueVersion &+= 1
        entries[Int(slot)].generation &+= 1
        let e = entries[Int(slot)]
        let key: Double
        switch config.order {
        case .fcfs, .cacheAware: key = Double(e.arrivalSeq)
        case .shortestPredictedFirst:
            key = Double(e.expectedOutput) * 1_048_576 + Double(e.arrivalSeq % 1_048_576)
            agingQueue.insert(.init(key: Double(e.arrivalSeq), slot: slot, generation: e.generation))
        }
        queue.insert(.init(key: key, slot: slot, generation: e.generation))
    }

    func isQueued(_ item: WaitingQueue.Item) -> Bool {
        let e = entries[Int(item.slot)]
        return e.generation == item.generation && (e.state == .waiting || e.state == .preempted)
    }

    // MARK: - Scheduling

    /// Plans the next step at time `now`: grows or preempts running requests that need a block, gives
    /// each running request its prefill chunk or decode under the token budget, then admits waiting
    /// requests while blocks, budget and running slots allow.
    ///
    /// - Returns: the plan (also in `plan`). O(running + candidates); no allocation in steady state.
    @discardableResult
    public func schedule(now: Double) throws(SchedulerError) -> StepPlan {
        plan.reset()
        finished.removeAll(keepingCapacity: true)
        planningNow = now
        stats.steps += 1
        try growRunning()
        var budget = config.maxBatchedTokens
        samplerSlots.removeAll(keepingCapacity: true)
        // Decodes first: a decode is never stalled behind a prefill chunk.
        var decodeContext = 0
        for slot in running where budget > 0 {
            let e = entries[Int(slot)]
            if e.computed < e.contextTarget { continue }        // prefilling: second pass
            if e.computed + 1 > e.slotTokens { continue }        // waiting for a block (`canWait`)
            budget -= 1
            decodeContext += e.computed
            plan.decodes.append(.init(id: e.id, context: e.computed))
            plan.decodeSlots.append(slot)
        }
        budget = prefillBudget(decodes: plan.decodes.count, decodeContext: decodeContext, left: budget)
        for slot in running where budget > 0 {
            let e = entries[Int(slot)]
            if e.computed >= e.contextTarget { continue }
            let chunk = try prefillChunk(slot, wanted: min(e.contextTarget - e.computed, budget))
            if chunk == 0 { continue }
            budget -= chunk
            addPrefill(slot, chunk: chunk)
        }
        if plan.preemptions.isEmpty {
            try admit(now: now, budget: &budget)
        }
        plan.samplerCount = samplerSlots.count + plan.decodes.count
        return plan
    }

    /// Prompt tokens this step's prefill chunks (and admissions) may take, `left` being what the token
    /// budget has after `decodes` decodes reading `decodeContext` tokens of KV. Under stall-free batching
    /// (`SchedulerConfig.stallFree`) a step that carries decodes gets what keeps it within that budget,
    /// at least one block; a step without decodes may use the whole token budget. O(1).
    func prefillBudget(decodes: Int, decodeContext: Int, left: Int) -> Int {
        guard let stallFree = config.stallFree, decodes > 0 else { return left }
        return min(left, max(stallFree.tokens(decodeContextTokens: decodeContext) - decodes, cache.blockTokens))
    }

    func addPrefill(_ slot: Int32, chunk: Int) {
        let e = entries[Int(slot)]
        let samples = e.computed + chunk == e.contextTarget
        plan.prefills.append(.init(id: e.id, tokens: chunk, contextBefore: e.computed, samples: samples))
        plan.prefillSlots.append(slot)
        if samples { samplerSlots.append(slot) }
    }

    /// How many of `wanted` prompt tokens `slot` can prefill now: all when its blocks hold them, else
    /// what fits after taking free blocks (on-demand growth during prefill never preempts).
    func prefillChunk(_ slot: Int32, wanted: Int) throws(SchedulerError) -> Int {
        let e = entries[Int(slot)]
        if e.computed + wanted <= e.slotTokens { return wanted }
        let bt = cache.blockTokens
        let fit = min(wanted, e.slotTokens - e.computed + cache.freeBlockCount * bt)
        if fit <= 0 { return max(0, e.slotTokens - e.computed) }
        try flush(slot)
        let outcome: AllocationOutcome
        do { outcome = try cache.allocate(e.id, newTokens: fit) } catch { throw .cache(error) }
        guard case .allocated = outcome else { return max(0, e.slotTokens - e.computed) }
        entries[Int(slot)].slotTokens = roundUp(e.computed + fit, bt)
        return fit
    }

    /// `n` rounded up to a multiple of `b`. O(1).
    @inline(__always)
    func roundUp(_ n: Int, _ b: Int) -> Int { (n + b - 1) / b * b }
}
