import KVCache

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
    public private(set) var stats = SchedulerStats()
    /// Requests finished since the last `schedule` call began.
    @exclusivity(unchecked)
    public private(set) var finished: [FinishedRequest] = []
    /// The plan of the last `schedule` call.
    @exclusivity(unchecked)
    public private(set) var plan = StepPlan()

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
    private func predictOutput(_ input: PredictionInput, known: Int?) -> (Int, Int) {
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
    /// When the next waiting request reaches the aging bound (shortest-predicted-first), else infinity.
    public private(set) var nextAgingDeadline = Double.infinity
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

    private func enqueue(_ slot: Int32) {
        queueVersion &+= 1
        entries[Int(slot)].generation &+= 1
        let e = entries[Int(slot)]
        let key: Double
        switch config.order {
        case .fcfs: key = Double(e.arrivalSeq)
        case .shortestPredictedFirst:
            key = Double(e.expectedOutput) * 1_048_576 + Double(e.arrivalSeq % 1_048_576)
            agingQueue.insert(.init(key: Double(e.arrivalSeq), slot: slot, generation: e.generation))
        }
        queue.insert(.init(key: key, slot: slot, generation: e.generation))
    }

    private func isQueued(_ item: WaitingQueue.Item) -> Bool {
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
    private func prefillBudget(decodes: Int, decodeContext: Int, left: Int) -> Int {
        guard let stallFree = config.stallFree, decodes > 0 else { return left }
        return min(left, max(stallFree.tokens(decodeContextTokens: decodeContext) - decodes, cache.blockTokens))
    }

    private func addPrefill(_ slot: Int32, chunk: Int) {
        let e = entries[Int(slot)]
        let samples = e.computed + chunk == e.contextTarget
        plan.prefills.append(.init(id: e.id, tokens: chunk, contextBefore: e.computed, samples: samples))
        plan.prefillSlots.append(slot)
        if samples { samplerSlots.append(slot) }
    }

    /// How many of `wanted` prompt tokens `slot` can prefill now: all when its blocks hold them, else
    /// what fits after taking free blocks (on-demand growth during prefill never preempts).
    private func prefillChunk(_ slot: Int32, wanted: Int) throws(SchedulerError) -> Int {
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

    /// Gives every running request whose next token has no slot a block (or several), preempting
    /// victims when the cache is full, so that every request left running can compute a token.
    private func growRunning() throws(SchedulerError) {
        var i = 0
        while i < running.count {
            let slot = running[i]
            if entries[Int(slot)].computed + 1 > entries[Int(slot)].slotTokens {
                let before = stats.preemptions + stats.capacityFinishes
                try grow(slot)
                if stats.preemptions + stats.capacityFinishes != before {
                    // The running set changed under us: rescan (requests already grown are skipped).
                    i = 0
                    continue
                }
            }
            i += 1
        }
    }

    /// Extends `slot` by at least one block, preempting victims (possibly `slot` itself) until it fits.
    private func grow(_ slot: Int32) throws(SchedulerError) {
        let bt = cache.blockTokens
        var e = entries[Int(slot)]
        var extra = 1
        if !projected && (config.reservation == .predicted || config.reservation == .oracle) {
            extra = max(bt, Int(Double(e.reserveOutput) * config.extensionFraction))
            extra = min(extra, max(1, e.maxTokens - e.generated))
        }
        try flush(slot)
        while true {
            for attempt in [extra, 1] where attempt <= extra {
                let outcome: AllocationOutcome
                do { outcome = try cache.allocate(e.id, newTokens: 1, lookahead: attempt - 1) } catch { throw .cache(error) }
                if case .allocated = outcome {
                    e = entries[Int(slot)]
                    e.slotTokens = roundUp(e.computed + attempt, bt)
                    if !projected && (config.reservation == .predicted || config.reservation == .oracle) {
                        e.reserveOutput = min(e.maxTokens, max(e.reserveOutput, e.slotTokens - e.promptTokens))
                        stats.extensions += 1
                    }
                    entries[Int(slot)] = e
                    return
                }
                if attempt == 1 { break }
            }
            if canWait(slot) {
                stats.stalls += 1
                return   // left without a slot: it skips this step (see `canWait`)
            }
            guard let victim = pickVictim() else { return }
            if victim == slot {
                if running.count == 1 {
                    try finish(slot, reason: .capacity, duringPlanning: true)
                } else {
                    try preempt(slot)
                }
                return
            }
            try preempt(victim)
        }
    }

    /// Under projected admission, whether a request that found no free block may wait instead of
    /// preempting anyone: another running request that has room to decode is predicted to end within
    /// `stallHorizonSteps` steps and will free its blocks. The waiting request keeps its KV and skips
    /// decoding until a block is free; when no such request exists, a victim is preempted. O(running).
    private func canWait(_ slot: Int32) -> Bool {
        guard projected, config.stallHorizonSteps > 0 else { return false }
        for s in running where s != slot {
            let e = entries[Int(s)]
            guard e.computed + 1 <= e.slotTokens else { continue }   // itself waiting for a block
            if max(0, e.reserveOutput - e.generated) <= config.stallHorizonSteps { return true }
        }
        return false
    }

    /// The running request to preempt when a request must grow (see the type's documentation).
    private func pickVictim() -> Int32? {
        guard !running.isEmpty else { return nil }
        switch config.reservation {
        case .predicted, .oracle:
            var best = running[running.count - 1]
            var bestComputed = entries[Int(best)].computed
            for s in running.reversed() where entries[Int(s)].computed < bestComputed {
                best = s
                bestComputed = entries[Int(s)].computed
            }
            return best
        case .worstCase, .onDemand:
            return running[running.count - 1]
        }
    }

    /// Preempts a running request: by swap when the swap space takes it, else by recompute.
    private func preempt(_ slot: Int32) throws(SchedulerError) {
        var e = entries[Int(slot)]
        let held = e.computed
        let blocks = (e.slotTokens + cache.blockTokens - 1) / cache.blockTokens
        var mode = StepPlan.PreemptionMode.recompute
        if let swapSpace, held > 0, swapSpace.reserve(e.id, blocks: blocks) {
            mode = .swap
            let table: [BlockID]
            do { table = try cache.blockTable(e.id) } catch { throw .cache(error) }
            plan.swapOuts.append(.init(id: e.id, blocks: table, tokens: held))
            e.swappedTokens = held
            stats.swappedOutTokens += held
        } else {
            stats.preemptedTokens += held
        }
        do { try cache.free(e.id) } catch { throw .cache(error) }
        plan.preemptions.append(.init(id: e.id, mode: mode, tokens: held))
        stats.preemptions += 1
        e.preemptions += 1
        e.registered = false
        e.computed = 0
        e.slotTokens = 0
        e.pendingAppend = 0
        e.pendingCommit = 0
        e.contextTarget = e.promptTokens + e.generated
        e.state = .preempted
        e.generation &+= 1
        entries[Int(slot)] = e
        removeRunning(slot)
        queueVersion &+= 1
        queue.pushFront(slot: slot, generation: e.generation)
        if case .shortestPredictedFirst = config.order {
            agingQueue.insert(.init(key: Double(e.arrivalSeq), slot: slot, generation: e.generation))
        }
    }

    private func removeRunning(_ slot: Int32) {
        if let i = running.lastIndex(of: slot) { running.remove(at: i) }
        // Drop it from this step's plan if it was already scheduled.
        if let j = plan.decodeSlots.firstIndex(of: slot) {
            plan.decodeSlots.remove(at: j)
            plan.decodes.remove(at: j)
        }
        if let j = plan.prefillSlots.firstIndex(of: slot) {
            plan.prefillSlots.remove(at: j)
            plan.prefills.remove(at: j)
            if let k = samplerSlots.firstIndex(of: slot) { samplerSlots.remove(at: k) }
        }
    }

    /// Sends batched decode tokens of `slot` to the cache.
    private func flush(_ slot: Int32) throws(SchedulerError) {
        let e = entries[Int(slot)]
        guard e.pendingAppend > 0 || e.pendingCommit > 0 else { return }
        do {
            if e.pendingAppend > 0 {
                if e.tokenIDs {
                    try cache.append(e.id, tokens: Array(cold[Int(slot)].generatedIDs.suffix(e.pendingAppend)))
                } else {
                    try cache.append(e.id, count: e.pendingAppend)
                }
            }
            if e.pendingCommit > 0 { try cache.commit(e.id, computedTokens: e.pendingCommit) }
        } catch { throw .cache(error) }
        entries[Int(slot)].pendingAppend = 0
        entries[Int(slot)].pendingCommit = 0
    }

    // MARK: - Admission

    /// Output tokens a queued request reserves at admission, beyond its context.
    private func reservedOutput(_ e: Entry) -> Int {
        switch config.reservation {
        case .onDemand: return 0
        case .worstCase, .predicted, .oracle:
            if projected { return 0 }
            let total = e.promptTokens + e.reserveOutput
            return max(1, total - e.contextTarget)
        }
    }

    private func admit(now: Double, budget: inout Int) throws(SchedulerError) {
        queue.trimFront(isLive: isQueued)
        guard budget > 0, running.count < config.maxRunningSequences, !queue.isEmpty else { return }
        let free = cache.freeBlockCount
        if let m = admissionMemo, free <= m.free, running.count >= m.running, queueVersion == m.queueVersion,
           budget <= m.budget, observations == m.observations, now < m.deadline {
            return
        }
        let admittedBefore = stats.admitted
        let memo = AdmissionMemo(free: free, running: running.count, queueVersion: queueVersion, budget: budget,
                                 observations: observations, deadline: .infinity)
        defer {
            if stats.admitted == admittedBefore {
                admissionMemo = memo
                admissionMemo!.deadline = nextAgingDeadline
            } else {
                admissionMemo = nil
            }
        }
        nextAgingDeadline = .infinity
        candidates.removeAll(keepingCapacity: true)
        let window: Int
        switch config.effectivePacking {
        case .inOrder: window = config.maxRunningSequences - running.count
        case let .firstFitDecreasing(w): window = max(1, w)
        }
        if case let .shortestPredictedFirst(aging) = config.order {
            agingQueue.trimFront(isLive: isQueued)
            agingQueue.forEachLive(isLive: isQueued) { item in
                let arrival = entries[Int(item.slot)].arrival
                guard now - arrival >= aging else {
                    nextAgingDeadline = arrival + aging
                    return false
                }
                guard candidates.count < window else { return false }
                candidates.append(item.slot)
                return true
            }
        }
        let aged = candidates.count
        queue.forEachLive(isLive: isQueued) { item in
            guard candidates.count < window else { return false }
            if aged == 0 || !candidates[0..<aged].contains(item.slot) { candidates.append(item.slot) }
            return true
        }
        // Aged and preempted requests (preempted ones wait at the queue front) keep their order and
        // block everything behind them when they do not fit; the rest may be packed.
        if predictor != nil && config.reservation == .predicted {
            let every = max(1, config.repredictAfterObservations)
            for slot in candidates where entries[Int(slot)].generated == 0 {
                let at = entries[Int(slot)].predictedAt
                // Predicted before any feedback, or `every` outputs ago: ask again.
                guard (at == 0 && observations > 0) || observations - at >= every else { continue }
                let e = entries[Int(slot)]
                let (expected, reserve) = predictOutput(cold[Int(slot)].input, known: e.knownOutput)
                entries[Int(slot)].expectedOutput = expected
                entries[Int(slot)].reserveOutput = reserve
                entries[Int(slot)].predictedAt = observations
            }
        }
        if projected { buildProjection() }
        var priority = aged
        while priority < candidates.count && entries[Int(candidates[priority])].state == .preempted { priority += 1 }
        if case .firstFitDecreasing = config.effectivePacking {
            // Under FCFS the oldest waiting request is tried first (and passed over only when it does
            // not fit), so packing fills around it instead of starving it.
            let packed = config.order == .fcfs ? min(priority + 1, candidates.count) : priority
            candidates[packed...].sort { a, b in
                let na = packingNeed(a), nb = packingNeed(b)
                return na != nb ? na > nb : entries[Int(a)].arrivalSeq < entries[Int(b)].arrivalSeq
            }
        }
        let inOrder = config.effectivePacking == .inOrder
        for (k, slot) in candidates.enumerated() {
            if budget == 0 || running.count >= config.maxRunningSequences { break }
            var neverFits = false
            let admitted = try tryAdmit(slot, budget: &budget, neverFits: &neverFits)
            if neverFits {
                // Nothing else holds blocks, yet it does not fit: it never will.
                try finish(slot, reason: .capacity, duringPlanning: true)
                continue
            }
            if !admitted && entries[Int(slot)].state != .finished && (inOrder || k < priority) { break }
        }
    }

    /// Blocks a waiting request needs for its context and the rest of its reserved output: the size
    /// first-fit-decreasing packs by. O(1).
    private func packingNeed(_ slot: Int32) -> Int {
        let e = entries[Int(slot)]
        let bt = cache.blockTokens
        return (e.contextTarget + max(0, e.reserveOutput - e.generated) + bt - 1) / bt
    }

    /// Admits `slot` if its reservation fits; returns whether it did. Sets `neverFits` when it failed
    /// with nothing running (so it cannot fit at all).
    private func tryAdmit(_ slot: Int32, budget: inout Int, neverFits: inout Bool) throws(SchedulerError) -> Bool {
        let bt = cache.blockTokens
        var e = entries[Int(slot)]
        let reserve = reservedOutput(e)
        let capacityTokens = cache.capacityBlocks * bt
        if e.contextTarget + 1 > capacityTokens {
            try finish(slot, reason: .capacity, duringPlanning: true)
            return false
        }
        let total = min(e.contextTarget + reserve, capacityTokens)
        let free = cache.freeBlockCount
        // The watermark keeps room for running requests to grow; with none running it only blocks.
        let watermark = config.reservation == .onDemand && !running.isEmpty
            ? Int(Double(cache.capacityBlocks) * config.watermarkFraction) : 0
        var maxHitBlocks = 0
        switch cold[Int(slot)].prompt {
        case let .keys(keys, _): maxHitBlocks = keys.count
        case let .tokens(t): maxHitBlocks = t.count / bt
        }
        let firstNeed = config.reservation == .onDemand ? min(e.contextTarget, budget) : total
        if (firstNeed + bt - 1) / bt - maxHitBlocks > free - watermark {
            neverFits = running.isEmpty
            return false
        }
        let projectedRemaining = max(1, e.reserveOutput - e.generated)
        // Alone, a request is always admitted: it runs until done or until it fills the cache.
        let checkProjection = projected && !running.isEmpty
        if checkProjection && !projectionFits(remaining: projectedRemaining,
                                              own: max(0, roundUp(e.contextTarget, bt) - maxHitBlocks * bt)) {
            return false   // does not fit even if every prompt block hit the cache
        }
        var own = roundUp(e.contextTarget, bt)
        do {
            if !e.registered {
                switch cold[Int(slot)].prompt {
                case let .keys(keys, _):
                    try cache.addSequence(e.id, promptKeys: keys, promptTokens: e.contextTarget)
                case let .tokens(t):
                    if e.tokenIDs {
                        try cache.addSequence(e.id, prompt: cold[Int(slot)].generatedIDs.isEmpty ? t : t + cold[Int(slot)].generatedIDs)
                    } else {
                        // Some sampled ids were not reported: the output joins without ids (uncached).
                        try cache.addSequence(e.id, prompt: t)
                        if e.generated > 0 { try cache.append(e.id, count: e.generated) }
                    }
                }
                e.registered = true
                entries[Int(slot)].registered = true
            }
            var cached = 0
            var swapIn = 0
            var loadable = 0
            if e.swappedTokens > 0 {
                swapIn = e.swappedTokens
            } else {
                cached = try cache.lookup(e.id).cachedTokens
                loadable = loadablePrefixTokens(slot, cached: cached)
            }
            own -= cached
            if checkProjection && !projectionFits(remaining: projectedRemaining, own: own) { return false }
            var restored = max(cached + loadable, swapIn)
            let chunk = min(e.contextTarget - restored, budget)
            let first = restored - cached + chunk
            let lookahead: Int
            if config.reservation == .onDemand {
                lookahead = 0
                if (cached + first + bt - 1) / bt - cached / bt > free - watermark { return false }
            } else {
                lookahead = max(0, total - cached - first)
            }
            let outcome = try cache.allocate(e.id, newTokens: first, lookahead: lookahead)
            guard case .allocated = outcome else {
                neverFits = running.isEmpty
                return false
            }
            if swapIn > 0 {
                try cache.commit(e.id, computedTokens: swapIn - cached)
                plan.swapIns.append(.init(id: e.id, blocks: try cache.blockTable(e.id), tokens: swapIn))
                swapSpace?.release(e.id)
                e.swappedTokens = 0
            }
            if loadable > 0 { restored = try loadPrefix(slot, cached: cached, tokens: loadable) }
            e.computed = restored
            e.hitTokens = cached
            e.slotTokens = roundUp(cached + first + lookahead, bt)
            stats.prefixHitTokens += cached
        } catch { throw .cache(error) }
        e.state = .running
        e.generation &+= 1
        queue.noteRemoved()
        if case .shortestPredictedFirst = config.order { agingQueue.noteRemoved() }
        entries[Int(slot)] = e
        running.append(slot)
        stats.admitted += 1
        if projected { insertProjection(remaining: projectedRemaining, own: own) }
        let chunk = min(e.contextTarget - e.computed, budget)
        if chunk > 0 {
            budget -= chunk
            addPrefill(slot, chunk: chunk)
        }
        return true
    }

    /// Prompt tokens after the device hit `cached` that `prefixLoadSource` can supply (whole blocks;
    /// the last prompt token is always computed). O(loadable blocks).
    private func loadablePrefixTokens(_ slot: Int32, cached: Int) -> Int {
        guard let source = prefixLoadSource, case let .keys(keys, _) = cold[Int(slot)].prompt else { return 0 }
        let bt = cache.blockTokens
        let start = cached / bt
        let limit = min(keys.count, (entries[Int(slot)].promptTokens - 1) / bt)
        guard limit > start else { return 0 }
        return source.loadableBlocks(keys, from: start, maxBlocks: limit - start) * bt
    }

    /// Loads up to `tokens` prompt tokens after the device hit from `prefixLoadSource` into the blocks
    /// just allocated, commits them and lists them in the plan; returns the tokens now computed.
    private func loadPrefix(_ slot: Int32, cached: Int, tokens: Int) throws(KVCacheError) -> Int {
        guard let source = prefixLoadSource, case let .keys(keys, _) = cold[Int(slot)].prompt else { return cached }
        let bt = cache.blockTokens
        let id = entries[Int(slot)].id
        let start = cached / bt
        let got = source.load(keys, from: start, count: tokens / bt)
        guard got > 0 else { return cached }
        try cache.commit(id, computedTokens: got * bt)
        let table = try cache.blockTable(id)
        plan.prefixLoads.append(.init(id: id, blocks: Array(table[start ..< start + got]), tokens: got * bt))
        stats.prefixLoadedTokens += got * bt
        return cached + got * bt
    }

    // MARK: - Projected admission

    /// Fills `projection` from the running requests: for each, the tokens it will still grow by
    /// (predicted) and the tokens it holds alone (its blocks less its prefix hits), which it frees when it
    /// ends. Sorting (largest remaining first) waits until a check needs it. O(running).
    private func buildProjection() {
        projection.removeAll(keepingCapacity: true)
        let bt = cache.blockTokens
        projectionHeld = (cache.capacityBlocks - cache.freeBlockCount) * bt
        projectionOwnSum = 0
        projectionGrowthSum = 0
        for slot in running {
            let e = entries[Int(slot)]
            let remaining = max(e.reserveOutput, e.generated + 1) - e.generated
            let own = max(0, e.slotTokens - e.hitTokens)
            projection.append((remaining, own))
            projectionOwnSum += own
            projectionGrowthSum += remaining + bt
        }
        projectionSorted = false
    }

    /// Whether a request that needs `own` new tokens of blocks now and grows by `remaining` more keeps
    /// the projected KV within the cache at every future step.
    ///
    /// Usage at step t is what is held now, plus one token per step for every request still running,
    /// less what the requests that ended by then held alone; one block of slack per running request
    /// covers partial blocks. Its peaks come just before each predicted end, so the walk visits
    /// the ends from the latest down. O(running), plus a sort the first time in a pass.
    private func projectionFits(remaining: Int, own: Int) -> Bool {
        let capacity = cache.capacityBlocks * cache.blockTokens
        let slack = cache.blockTokens
        let held = projectionHeld + own
        // Nothing ending early, everyone growing to the end at once: a bound that often suffices.
        if held + projectionGrowthSum + remaining + slack <= capacity { return true }
        if !projectionSorted {
            projection.sort { $0.remaining > $1.remaining }
            projectionSorted = true
        }
        let ownTotal = projectionOwnSum + own
        var aliveOwn = 0, alive = 0
        var inserted = false
        var i = 0
        while i < projection.count || !inserted {
            let r: Int
            if !inserted && (i == projection.count || remaining >= projection[i].remaining) {
                r = remaining
                aliveOwn += own
                inserted = true
            } else {
                r = projection[i].remaining
                aliveOwn += projection[i].own
                i += 1
            }
            alive += 1
            // Just before this request's end: the ones with smaller remaining have ended.
            if held - (ownTotal - aliveOwn) + alive * (r - 1 + slack) > capacity { return false }
        }
        return true
    }

    private func insertProjection(remaining: Int, own: Int) {
        projectionHeld += own
        projectionOwnSum += own
        projectionGrowthSum += remaining + cache.blockTokens
        guard projectionSorted else {
            projection.append((remaining, own))
            return
        }
        var i = projection.count
        while i > 0 && projection[i - 1].remaining < remaining { i -= 1 }
        projection.insert((remaining, own), at: i)
    }

    // MARK: - Completion

    /// Records the results of the last plan: the computed tokens, one sampled token per sampler with
    /// `stops[i]` true when the engine ended that request (samplers in `StepPlan.samplerCount` order),
    /// and optional sampled token ids (needed only for token prompts, so recompute can re-add them).
    /// Finished requests are freed, fed to the predictor and listed in `finished`.
    /// - Throws: `stopFlagsMismatch` when `stops.count` differs from the plan's sampler count.
    public func complete(stops: [Bool], tokenIDs: [UInt32]? = nil, now: Double) throws(SchedulerError) {
        guard stops.count == plan.samplerCount else {
            throw .stopFlagsMismatch(expected: plan.samplerCount, got: stops.count)
        }
        if let tokenIDs, tokenIDs.count != stops.count {
            throw .stopFlagsMismatch(expected: stops.count, got: tokenIDs.count)
        }
        completingNow = now
        var sampler = 0
        for (j, p) in plan.prefills.enumerated() {
            let slot = plan.prefillSlots[j]
            do { try cache.commit(p.id, computedTokens: p.tokens) } catch { throw .cache(error) }
            entries[Int(slot)].computed += p.tokens
            if p.samples {
                try sampled(slot, stop: stops[sampler], id: tokenIDs?[sampler], now: now)
                sampler += 1
            }
        }
        try completeDecodes(steps: 1, stops: stops, firstStop: sampler, tokenIDs: tokenIDs, now: now)
        if !finished.isEmpty {
            running.removeAll { entries[Int($0)].state == .finished }
        }
    }

    /// How many consecutive steps the last plan could run unchanged: it decodes only, and every decoding
    /// request has slots and `max_tokens` room for that many more tokens. Admission, which failed (or
    /// had no room) in this plan, fails the same way while nothing finishes, unless a request ages
    /// (`nextAgingDeadline`) or arrives. 0 when the plan is not decode-only. O(decodes).
    public func repeatableDecodeSteps() -> Int {
        guard plan.prefills.isEmpty, plan.preemptions.isEmpty, plan.swapIns.isEmpty, plan.swapOuts.isEmpty,
              !plan.decodes.isEmpty else { return 0 }
        var k = Int.max
        for slot in plan.decodeSlots {
            let e = entries[Int(slot)]
            k = min(k, e.slotTokens - e.computed, e.maxTokens - e.generated)
        }
        return max(0, k)
    }

    /// Completes `steps` repetitions of the last (decode-only) plan at once, as `steps` pairs of
    /// `schedule`/`complete` would with every stop flag false but the last step's, which `stops` gives.
    /// O(decodes). `now` is the end of the last repetition.
    /// - Throws: `invalidRequest` when `steps` exceeds `repeatableDecodeSteps()`; `stopFlagsMismatch`.
    public func completeRepeated(steps: Int, stops: [Bool], now: Double) throws(SchedulerError) {
        guard steps >= 1, steps <= repeatableDecodeSteps() else {
            throw .invalidRequest("cannot repeat the plan \(steps) times")
        }
        guard stops.count == plan.samplerCount else {
            throw .stopFlagsMismatch(expected: plan.samplerCount, got: stops.count)
        }
        completingNow = now
        stats.steps += steps - 1
        try completeDecodes(steps: steps, stops: stops, firstStop: 0, tokenIDs: nil, now: now)
        if !finished.isEmpty {
            running.removeAll { entries[Int($0)].state == .finished }
        }
    }

    /// Records `steps` decode steps of every decoding request of the plan (the last one samples with
    /// `stops[firstStop + k]`), then finishes the stopped ones. The first pass runs over the entries in
    /// place without per-element checks; it is the per-sequence cost of every step.
    private func completeDecodes(steps: Int, stops: [Bool], firstStop: Int, tokenIDs: [UInt32]?,
                                 now: Double) throws(SchedulerError) {
        finishScratch.removeAll(keepingCapacity: true)
        finishReasons.removeAll(keepingCapacity: true)
        let projected = self.projected
        let blockTokens = cache.blockTokens
        let fraction = config.extensionFraction
        var extensions = 0
        entries.withUnsafeMutableBufferPointer { buf in
            for (k, slot) in plan.decodeSlots.enumerated() {
                let i = Int(slot)
                let stop = stops[firstStop + k]
                buf[i].computed += steps
                buf[i].pendingCommit += steps
                buf[i].generated += steps
                buf[i].pendingAppend += steps
                let generated = buf[i].generated, maxTokens = buf[i].maxTokens
                if projected && generated >= buf[i].reserveOutput && generated < maxTokens && !stop {
                    let reserve = buf[i].reserveOutput
                    buf[i].reserveOutput = min(maxTokens, reserve + max(blockTokens, Int(Double(reserve) * fraction)))
                    extensions += 1
                }
                if buf[i].tokenIDs {
                    if let id = tokenIDs?[firstStop + k], steps == 1 { cold[i].generatedIDs.append(id) } else {
                        buf[i].tokenIDs = false
                        cold[i].generatedIDs = []
                    }
                }
                if buf[i].firstTokenTime == nil { buf[i].firstTokenTime = now }
                if stop || generated >= maxTokens {
                    finishScratch.append(slot)
                    finishReasons.append(stop ? .stop : .length)
                }
            }
        }
        stats.extensions += extensions
        for (slot, reason) in zip(finishScratch, finishReasons) {
            try finish(slot, reason: reason, duringPlanning: false)
        }
    }

    private func sampled(_ slot: Int32, stop: Bool, id: UInt32?, now: Double) throws(SchedulerError) {
        let i = Int(slot)
        // Field by field, in place: this runs once per sequence per step.
        entries[i].generated += 1
        entries[i].pendingAppend += 1
        let generated = entries[i].generated
        let maxTokens = entries[i].maxTokens
        if projected && generated >= entries[i].reserveOutput && generated < maxTokens && !stop {
            // Outgrew its predicted length: extend the reservation the projection counts.
            let reserve = entries[i].reserveOutput
            let ext = max(cache.blockTokens, Int(Double(reserve) * config.extensionFraction))
            entries[i].reserveOutput = min(maxTokens, reserve + ext)
            stats.extensions += 1
        }
        if entries[i].tokenIDs {
            if let id { cold[i].generatedIDs.append(id) } else {
                // Ids must be complete to key blocks; from here on outputs are counted only.
                entries[i].tokenIDs = false
                cold[i].generatedIDs = []   // buffered outputs are flushed count-only as well
            }
        }
        if entries[i].firstTokenTime == nil { entries[i].firstTokenTime = now }
        if stop || generated >= maxTokens {
            try finish(slot, reason: stop ? .stop : .length, duringPlanning: false)
        }
    }

    /// Frees a request and reports it. Called for running requests (from `complete`, or from `grow`
    /// for a request that cannot fit) and for queued ones that can never fit.
    private func finish(_ slot: Int32, reason: FinishReason, duringPlanning: Bool) throws(SchedulerError) {
        let now = duringPlanning ? planningNow : completingNow
        var e = entries[Int(slot)]
        let wasRunning = e.state == .running
        if e.registered {
            do { try cache.free(e.id) } catch { throw .cache(error) }
        }
        if e.swappedTokens > 0 { swapSpace?.release(e.id) }
        if e.state == .waiting || e.state == .preempted {
            queueVersion &+= 1
            queue.noteRemoved()
            if case .shortestPredictedFirst = config.order { agingQueue.noteRemoved() }
        }
        e.state = .finished
        e.generation &+= 1
        entries[Int(slot)] = e
        finished.append(FinishedRequest(id: e.id, reason: reason, arrival: e.arrival, firstTokenTime: e.firstTokenTime,
                                        finishTime: now, outputTokens: e.generated,
                                        promptTokens: e.promptTokens, preemptions: e.preemptions))
        if reason != .capacity, let predictor {
            predictor.observe(cold[Int(slot)].input, actualOutput: e.generated)
            observations += 1
        }
        stats.finished += 1
        if reason == .capacity { stats.capacityFinishes += 1 }
        slotOf[e.id] = nil
        freeSlots.append(slot)
        cold[Int(slot)] = ColdEntry(prompt: .keys([], tokenCount: 0), input: PredictionInput(promptTokens: 0, maxTokens: 1))
        if wasRunning && duringPlanning {
            // Finished while planning: leave the running set and this step's plan now.
            removeRunning(slot)
        }
    }

    @inline(__always)
    private func roundUp(_ n: Int, _ b: Int) -> Int { (n + b - 1) / b * b }
}
