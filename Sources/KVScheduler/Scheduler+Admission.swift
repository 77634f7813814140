import KVCache

/// Admission of waiting requests under the reservation policy: candidate window, packing, prefix
/// lookups and loads from a lower tier.
extension Scheduler {
    /// Output tokens a queued request reserves at admission, beyond its context.
    func reservedOutput(_ e: Entry) -> Int {
        switch config.reservation {
        case .onDemand: return 0
        case .worstCase, .predicted, .oracle:
            if projected { return 0 }
            let total = e.promptTokens + e.reserveOutput
            return max(1, total - e.contextTarget)
        }
    }

    func admit(now: Double, budget: inout Int) throws(SchedulerError) {
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
        var window: Int
        switch config.effectivePacking {
        case .inOrder: window = config.maxRunningSequences - running.count
        case let .firstFitDecreasing(w): window = max(1, w)
        }
        // The cache-aware order picks among at least this many waiting requests, even when fewer
        // running slots are free (else with one free slot it would be FCFS).
        if config.order.isCacheAware { window = max(window, Self.cacheAwareWindow) }
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
        var aged = candidates.count
        queue.forEachLive(isLive: isQueued) { item in
            guard candidates.count < window else { return false }
            if aged == 0 || !candidates[0..<aged].contains(item.slot) { candidates.append(item.slot) }
            return true
        }
        if case let .cacheAware(starvation) = config.order { aged = orderByCachedShare(now: now, starvation: starvation) }
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
        if case .firstFitDecreasing = config.effectivePacking, config.order.isCacheAware == false {
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

    /// Fewest waiting requests the cache-aware order chooses among.
    static let cacheAwareWindow = 64

    /// Cache-aware order of `candidates` (queued in arrival order, preempted ones first): the leading
    /// preempted requests and those that waited `starvation` seconds keep their order; the rest are
    /// sorted by cached share (`cachedShare`), largest first, ties by arrival. Returns how many kept
    /// their order, and sets `nextAgingDeadline` for the first that has not waited long enough.
    /// O(candidates x (matched blocks + log candidates)); no allocation once the scratch has grown.
    func orderByCachedShare(now: Double, starvation: Double) -> Int {
        var kept = 0
        while kept < candidates.count {
            let e = entries[Int(candidates[kept])]
            guard e.state == .preempted || now - e.arrival >= starvation else {
                nextAgingDeadline = e.arrival + starvation
                break
            }
            kept += 1
        }
        guard candidates.count - kept > 1 else { return kept }
        cacheAwareScratch.removeAll(keepingCapacity: true)
        for slot in candidates[kept...] {
            cacheAwareScratch.append((cachedShare(slot), entries[Int(slot)].arrivalSeq, slot))
        }
        cacheAwareScratch.sort { a, b in a.share != b.share ? a.share > b.share : a.arrival < b.arrival }
        for (i, c) in cacheAwareScratch.enumerated() { candidates[kept + i] = c.slot }
        return kept
    }

    /// Cached prompt tokens (device hit plus what `prefixLoadSource` can load) over the prompt tokens
    /// left to compute, for a waiting request: RAGCache's reordering key. Changes nothing; prompts
    /// given as tokens count as uncached (0). O(matched blocks) probes.
    func cachedShare(_ slot: Int32) -> Double {
        guard case let .keys(keys, _) = cold[Int(slot)].prompt else { return 0 }
        let e = entries[Int(slot)]
        let bt = cache.blockTokens
        let limit = max(0, min(keys.count, (e.promptTokens - 1) / bt))
        let hit = keys.withUnsafeBufferPointer { cache.matchLength(UnsafeBufferPointer(rebasing: $0[..<limit])) } * bt
        let cached = hit + ((try? loadablePrefixTokens(slot, cached: hit)) ?? 0)
        return Double(cached) / Double(max(1, e.contextTarget - cached))
    }

    /// Blocks a waiting request needs for its context and the rest of its reserved output: the size
    /// first-fit-decreasing packs by. O(1).
    func packingNeed(_ slot: Int32) -> Int {
        let e = entries[Int(slot)]
        let bt = cache.blockTokens
        return (e.contextTarget + max(0, e.reserveOutput - e.generated) + bt - 1) / bt
    }

    /// Admits `slot` if its reservation fits; returns whether it did. Sets `neverFits` when it failed
    /// with nothing running (so it cannot fit at all).
    func tryAdmit(_ slot: Int32, budget: inout Int, neverFits: inout Bool) throws(SchedulerError) -> Bool {
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
                loadable = try loadablePrefixTokens(slot, cached: cached)
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
    func loadablePrefixTokens(_ slot: Int32, cached: Int) throws(KVCacheError) -> Int {
        guard let source = prefixLoadSource else { return 0 }
        let keys = try promptKeys(slot)
        let bt = cache.blockTokens
        let start = cached / bt
        let limit = min(keys.count, (entries[Int(slot)].promptTokens - 1) / bt)
        guard limit > start else { return 0 }
        return source.loadableBlocks(for: entries[Int(slot)].id, keys, from: start, maxBlocks: limit - start) * bt
    }

    /// Loads up to `tokens` prompt tokens after the device hit from `prefixLoadSource` into the blocks
    /// just allocated, commits them and lists them in the plan; returns the tokens now computed.
    func loadPrefix(_ slot: Int32, cached: Int, tokens: Int) throws(KVCacheError) -> Int {
        guard let source = prefixLoadSource else { return cached }
        let keys = try promptKeys(slot)
        let bt = cache.blockTokens
        let id = entries[Int(slot)].id
        let start = cached / bt
        let got = source.load(for: id, keys, from: start, into: try cache.blockTable(id)[start ..< start + tokens / bt])
        guard got > 0 else { return cached }
        try cache.commit(id, computedTokens: got * bt)
        let table = try cache.blockTable(id)   // again: the commit may have swapped in deduplicated blocks
        plan.prefixLoads.append(.init(id: id, blocks: Array(table[start ..< start + got]), tokens: got * bt))
        if source.recordsStoredBlocks { source.stored(keys, from: start, blocks: table[start ..< start + got]) }
        stats.prefixLoadedTokens += got * bt
        return cached + got * bt
    }

    /// The full-block keys of the prompt in `slot` (registered): a key prompt's own, a token prompt's from
    /// the cache manager (allocated; only with a `prefixLoadSource`).
    func promptKeys(_ slot: Int32) throws(KVCacheError) -> [BlockKey] {
        switch cold[Int(slot)].prompt {
        case let .keys(keys, _): keys
        case .tokens: try cache.promptKeys(entries[Int(slot)].id)
        }
    }

    /// Tells a `prefixLoadSource` that records stored blocks which device blocks hold the prompt blocks
    /// that the commit of `tokens` computed tokens of `slot` (now at `computed`) filled. O(blocks).
    func noteStoredPrompt(_ slot: Int32, tokens: Int) throws(KVCacheError) {
        guard let source = prefixLoadSource, source.recordsStoredBlocks else { return }
        let e = entries[Int(slot)]
        let bt = cache.blockTokens
        let first = (e.computed - tokens) / bt, end = min(e.promptTokens, e.computed) / bt
        guard first < end else { return }
        let keys = try promptKeys(slot)
        let table = try cache.blockTable(e.id)
        let stop = min(end, keys.count, table.count)
        guard first < stop else { return }
        source.stored(keys, from: first, blocks: table[first ..< stop])
    }
}
