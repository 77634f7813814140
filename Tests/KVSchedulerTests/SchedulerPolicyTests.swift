import KVCache
import KVPlan
import Testing
@testable import KVScheduler

/// Predicts a fixed length per prompt length (the tests choose it).
final class TablePredictor: OutputLengthPredictor {
    var table: [Int: Int]
    var observedLengths: [Int] = []
    init(_ table: [Int: Int]) { self.table = table }
    func predict(_ input: PredictionInput) -> LengthPrediction {
        let v = table[input.promptTokens] ?? 1
        return LengthPrediction(expected: v, reserve: v, bucket: 0)
    }
    func observe(_ input: PredictionInput, actualOutput: Int) { observedLengths.append(actualOutput) }
}

func request(_ id: Int, prompt: Int, maxTokens: Int = 64, arrival: Double = 0, known: Int? = nil) -> SchedulerRequest {
    SchedulerRequest(id: SequenceID(Int64(id)), prompt: .keys([], tokenCount: prompt), maxTokens: maxTokens,
                     arrival: arrival, knownOutputTokens: known)
}

/// Runs plan/complete cycles, each request stopping after `outputs` tokens, until idle or `steps`;
/// returns the ids in the order of their first prefill chunk (admission order).
func admissionOrder(_ s: Scheduler, steps: Int, stopAfter outputs: Int) throws -> [Int64] {
    var order: [Int64] = []
    var admitted: Set<Int64> = []
    var produced: [Int64: Int] = [:]
    var now = 0.0
    for _ in 0..<steps {
        let plan = try s.schedule(now: now)
        // A request's first prefill chunk (it starts after its prefix hit, if any).
        for p in plan.prefills where !admitted.contains(p.id.raw) {
            admitted.insert(p.id.raw)
            order.append(p.id.raw)
        }
        var stops: [Bool] = []
        let ids = plan.prefills.filter(\.samples).map(\.id) + plan.decodes.map(\.id)
        for id in ids {
            produced[id.raw, default: 0] += 1
            stops.append(produced[id.raw]! >= outputs)
        }
        now += 1
        try s.complete(stops: stops, now: now)
        if s.isIdle { break }
    }
    return order
}

@Suite struct SchedulerPolicyTests {
    @Test func worstCaseReservesPromptPlusMaxTokens() throws {
        let cache = try KVCacheManager(KVCacheConfig(blockTokens: 16, capacityBlocks: 100))
        let s = Scheduler(config: SchedulerConfig(reservation: .worstCase), cache: cache)
        try s.submit(request(1, prompt: 40, maxTokens: 200))
        try s.schedule(now: 0)
        #expect(s.reservedTokens(of: SequenceID(1)) == 240)   // ceil(240 / 16) blocks
        #expect(cache.freeBlockCount == 100 - 15)
    }

    @Test func onDemandTakesOnlyThePrompt() throws {
        let cache = try KVCacheManager(KVCacheConfig(blockTokens: 16, capacityBlocks: 100))
        let s = Scheduler(config: SchedulerConfig(reservation: .onDemand), cache: cache)
        try s.submit(request(1, prompt: 40, maxTokens: 200))
        try s.schedule(now: 0)
        #expect(s.reservedTokens(of: SequenceID(1)) == 48)
    }

    @Test func staticPredictedReservesThePrediction() throws {
        let cache = try KVCacheManager(KVCacheConfig(blockTokens: 16, capacityBlocks: 100))
        var config = SchedulerConfig(reservation: .predicted)
        config.projectedAdmission = false
        let s = Scheduler(config: config, cache: cache, predictor: TablePredictor([40: 50]))
        try s.submit(request(1, prompt: 40, maxTokens: 200))
        try s.schedule(now: 0)
        #expect(s.reservedTokens(of: SequenceID(1)) == 96)   // 40 + 50 = 90 -> 6 blocks
    }

    /// Four decoding requests, then a 1,000-token prompt: with stall-free batching every step keeps all
    /// four decodes and gives the long prompt at most the stall-free budget less the decodes; without it the
    /// prompt goes through in one step.
    @Test(arguments: [64, nil] as [Int?])
    func stallFreeBatchingKeepsDecodesAndChunksPrefill(mixed: Int?) throws {
        let cache = try KVCacheManager(KVCacheConfig(blockTokens: 16, capacityBlocks: 200))
        var config = SchedulerConfig(reservation: .onDemand)
        config.maxBatchedTokens = 2048
        config.stallFree = mixed.map { StallFreeBudget(baseTokens: $0) }
        let s = Scheduler(config: config, cache: cache)
        for i in 1...4 { try s.submit(request(i, prompt: 16, maxTokens: 500)) }
        var now = 0.0
        func step() throws -> StepPlan {
            let plan = try s.schedule(now: now)
            now += 1
            try s.complete(stops: Array(repeating: false, count: plan.samplerCount), now: now)
            return plan
        }
        _ = try step()                                    // the four short prompts
        try s.submit(request(5, prompt: 1000, maxTokens: 500))
        var prefillSteps = 0
        var prefilled = 0
        while prefilled < 1000 {
            let plan = try step()
            #expect(plan.decodes.count == 4)              // no decode stalls behind the prefill
            let tokens = plan.prefills.reduce(0) { $0 + $1.tokens }
            if let mixed { #expect(tokens <= mixed - 4) }
            prefilled += tokens
            prefillSteps += 1
            #expect(prefillSteps <= 100)
            if prefillSteps > 100 { break }
        }
        #expect(prefillSteps == (mixed == nil ? 1 : (1000 + 59) / 60))
    }

    /// When the decodes alone fill the stall-free budget, a waiting prompt still gets one block a step.
    @Test func stallFreeBatchingStillPrefillsOneBlockWhenDecodesFillTheStep() throws {
        let cache = try KVCacheManager(KVCacheConfig(blockTokens: 16, capacityBlocks: 200))
        var config = SchedulerConfig(reservation: .onDemand)
        config.stallFree = StallFreeBudget(baseTokens: 3)
        let s = Scheduler(config: config, cache: cache)
        for i in 1...4 { try s.submit(request(i, prompt: 8, maxTokens: 500)) }
        var plan = try s.schedule(now: 0)
        try s.complete(stops: Array(repeating: false, count: plan.samplerCount), now: 1)
        try s.submit(request(5, prompt: 100, maxTokens: 500))
        plan = try s.schedule(now: 1)
        #expect(plan.decodes.count == 4)
        #expect(plan.prefills.map(\.tokens) == [16])
    }

    /// First-fit-decreasing under FCFS: the oldest waiting request goes first when it fits, even when a
    /// larger one waits behind it and the token budget admits only one a step.
    @Test func packingTriesTheOldestFirst() throws {
        let cache = try KVCacheManager(KVCacheConfig(blockTokens: 16, capacityBlocks: 100))
        var config = SchedulerConfig(reservation: .predicted)
        config.maxBatchedTokens = 16
        let s = Scheduler(config: config, cache: cache, predictor: TablePredictor([16: 4, 200: 4]))
        try s.submit(request(1, prompt: 16))
        try s.submit(request(2, prompt: 200))
        #expect(try admissionOrder(s, steps: 100, stopAfter: 2) == [1, 2])
    }

    /// When the oldest does not fit, the rest of the window is packed largest first around it.
    @Test func packingFillsAroundAnOldestThatDoesNotFit() throws {
        let cache = try KVCacheManager(KVCacheConfig(blockTokens: 16, capacityBlocks: 10))
        var config = SchedulerConfig(reservation: .predicted)
        config.projectedAdmission = false
        let s = Scheduler(config: config, cache: cache, predictor: TablePredictor([96: 1, 60: 1, 10: 1, 30: 1]))
        try s.submit(request(0, prompt: 96))                // 7 blocks, keeps running
        var plan = try s.schedule(now: 0)
        try s.complete(stops: Array(repeating: false, count: plan.samplerCount), now: 1)
        #expect(cache.freeBlockCount == 3)
        try s.submit(request(1, prompt: 60, arrival: 1))    // 4 blocks: does not fit
        try s.submit(request(2, prompt: 10, arrival: 1))    // 1 block
        try s.submit(request(3, prompt: 30, arrival: 1))    // 2 blocks
        plan = try s.schedule(now: 1)
        #expect(plan.prefills.filter { $0.contextBefore == 0 }.map(\.id.raw) == [3, 2])
        #expect(s.state(of: SequenceID(1)) == .waiting)
    }

    @Test func shortestPredictedFirstOrdersByPrediction() throws {
        let cache = try KVCacheManager(KVCacheConfig(blockTokens: 16, capacityBlocks: 8))
        var config = SchedulerConfig(reservation: .onDemand)
        config.order = .shortestPredictedFirst(agingSeconds: 1_000)
        config.maxRunningSequences = 1
        let s = Scheduler(config: config, cache: cache, predictor: TablePredictor([10: 30, 11: 5, 12: 20]))
        try s.submit(request(1, prompt: 10))
        try s.submit(request(2, prompt: 11))
        try s.submit(request(3, prompt: 12))
        #expect(try admissionOrder(s, steps: 200, stopAfter: 3) == [2, 3, 1])
    }

    @Test func agingBoundsTheWaitOfLongRequests() throws {
        let cache = try KVCacheManager(KVCacheConfig(blockTokens: 16, capacityBlocks: 8))
        var config = SchedulerConfig(reservation: .onDemand)
        config.order = .shortestPredictedFirst(agingSeconds: 5)
        config.maxRunningSequences = 1
        let s = Scheduler(config: config, cache: cache, predictor: TablePredictor([10: 500]))
        try s.submit(request(1, prompt: 10, arrival: 0))      // long: would wait behind every short one
        for i in 2...40 { try s.submit(request(i, prompt: 20 + i, arrival: 0)) }
        let order = try admissionOrder(s, steps: 2_000, stopAfter: 2)
        // Each short request runs ~2 steps of 1 s; request 1 reaches the 5 s bound after a few.
        let position = try #require(order.firstIndex(of: 1))
        #expect(position > 0 && position <= 4)
    }

    /// Keys of a prompt of `blocks` blocks whose first `shared` blocks are the common prefix.
    private func keys(_ blocks: Int, shared: Int, id: Int) -> [BlockKey] {
        (0..<blocks).map { BlockKey(lo: UInt64($0 + 1), hi: $0 < shared ? 7 : UInt64(id)) }
    }

    @Test func cacheAwareOrdersByCachedShare() throws {
        let cache = try KVCacheManager(KVCacheConfig(blockTokens: 16, capacityBlocks: 64))
        var config = SchedulerConfig(reservation: .onDemand)
        config.order = .cacheAware(starvationSeconds: 1_000)
        config.maxRunningSequences = 1
        let s = Scheduler(config: config, cache: cache)
        // Request 1 caches an 8-block prefix; then 2 (no share), 3 (4 of 9 blocks cached) and 4 (8 of 9)
        // arrive together: cache-aware admits 4, 3, 2 (FCFS would admit 2, 3, 4).
        func submit(_ id: Int, shared: Int) throws {
            try s.submit(SchedulerRequest(id: SequenceID(Int64(id)), prompt: .keys(keys(9, shared: shared, id: id), tokenCount: 9 * 16),
                                          maxTokens: 8, arrival: 0, knownOutputTokens: 2))
        }
        try submit(1, shared: 9)
        #expect(try admissionOrder(s, steps: 50, stopAfter: 2) == [1])
        try submit(2, shared: 0)
        try submit(3, shared: 4)
        try submit(4, shared: 8)
        #expect(try admissionOrder(s, steps: 200, stopAfter: 2) == [4, 3, 2])
    }

    @Test func cacheAwareOrderLetsNoRequestStarve() throws {
        let cache = try KVCacheManager(KVCacheConfig(blockTokens: 16, capacityBlocks: 64))
        var config = SchedulerConfig(reservation: .onDemand)
        config.order = .cacheAware(starvationSeconds: 5)
        config.maxRunningSequences = 1
        let s = Scheduler(config: config, cache: cache)
        func submit(_ id: Int, shared: Int) throws {
            try s.submit(SchedulerRequest(id: SequenceID(Int64(id)), prompt: .keys(keys(9, shared: shared, id: id), tokenCount: 9 * 16),
                                          maxTokens: 8, arrival: 0, knownOutputTokens: 2))
        }
        try submit(1, shared: 9)
        _ = try admissionOrder(s, steps: 50, stopAfter: 2)
        try submit(2, shared: 0)   // uncached: every other request goes first until it waited 5 s
        for i in 3...40 { try submit(i, shared: 8) }
        let order = try admissionOrder(s, steps: 2_000, stopAfter: 2)
        let position = try #require(order.firstIndex(of: 2))
        #expect(position > 0 && position <= 4)
    }

    @Test func invalidSubmissionsLeaveStateUnchanged() throws {
        let cache = try KVCacheManager(KVCacheConfig(blockTokens: 16, capacityBlocks: 8))
        let s = Scheduler(config: SchedulerConfig(reservation: .oracle), cache: cache)
        #expect(throws: SchedulerError.self) { try s.submit(request(1, prompt: 10)) }   // oracle needs a length
        #expect(throws: SchedulerError.self) { try s.submit(request(2, prompt: 0, known: 3)) }
        #expect(throws: SchedulerError.self) { try s.submit(request(3, prompt: 5, maxTokens: 0, known: 3)) }
        try s.submit(request(4, prompt: 5, known: 3))
        #expect(throws: SchedulerError.duplicateRequest(SequenceID(4))) { try s.submit(request(4, prompt: 5, known: 3)) }
        #expect(s.activeCount == 1 && s.stats.submitted == 1)
        try s.schedule(now: 0)
        #expect(throws: SchedulerError.self) { try s.complete(stops: [], now: 1) }   // one sampler expected
        #expect(s.runningCount == 1)
    }

    @Test func trueLengthsGoBackToThePredictor() throws {
        let cache = try KVCacheManager(KVCacheConfig(blockTokens: 16, capacityBlocks: 64))
        let predictor = TablePredictor([:])
        let s = Scheduler(config: SchedulerConfig(reservation: .predicted), cache: cache, predictor: predictor)
        for i in 0..<5 { try s.submit(request(i, prompt: 10 + i)) }
        _ = try admissionOrder(s, steps: 500, stopAfter: 7)
        #expect(predictor.observedLengths == [7, 7, 7, 7, 7])
    }

    @Test func tooLargeRequestsFinishWithCapacity() throws {
        let cache = try KVCacheManager(KVCacheConfig(blockTokens: 16, capacityBlocks: 4))
        let s = Scheduler(config: SchedulerConfig(reservation: .onDemand), cache: cache)
        try s.submit(request(1, prompt: 100))
        try s.schedule(now: 0)
        #expect(s.finished.map(\.reason) == [.capacity])
        #expect(s.isIdle)
    }
}
