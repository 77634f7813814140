import KVCache
import KVPlan

/// Completion of a step: sampled tokens, stops, finished requests and what goes back to the predictor.
extension Scheduler {
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
            do { try noteStoredPrompt(slot, tokens: p.tokens) } catch { throw .cache(error) }
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
    func completeDecodes(steps: Int, stops: [Bool], firstStop: Int, tokenIDs: [UInt32]?,
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

    func sampled(_ slot: Int32, stop: Bool, id: UInt32?, now: Double) throws(SchedulerError) {
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
    func finish(_ slot: Int32, reason: FinishReason, duringPlanning: Bool) throws(SchedulerError) {
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
}
