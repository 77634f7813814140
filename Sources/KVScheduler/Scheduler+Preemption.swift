import KVCache
import KVPlan

/// Growing running requests that need a block, and preempting victims (by swap or recompute) when
/// the cache has none; lazy decode flushes to the cache.
extension Scheduler {
    /// Gives every running request whose next token has no slot a block (or several), preempting
    /// victims when the cache is full, so that every request left running can compute a token.
    func growRunning() throws(SchedulerError) {
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
    func grow(_ slot: Int32) throws(SchedulerError) {
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
    func canWait(_ slot: Int32) -> Bool {
        guard projected, config.stallHorizonSteps > 0 else { return false }
        for s in running where s != slot {
            let e = entries[Int(s)]
            guard e.computed + 1 <= e.slotTokens else { continue }   // itself waiting for a block
            if max(0, e.reserveOutput - e.generated) <= config.stallHorizonSteps { return true }
        }
        return false
    }

    /// The running request to preempt when a request must grow (see the type's documentation).
    func pickVictim() -> Int32? {
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
    func preempt(_ slot: Int32) throws(SchedulerError) {
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

    func removeRunning(_ slot: Int32) {
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
    func flush(_ slot: Int32) throws(SchedulerError) {
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
}
