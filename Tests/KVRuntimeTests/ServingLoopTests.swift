import KVCache
import KVPlan
import KVRuntime
import KVScheduler
import KVTestSupport
import KVTiers
import Testing

/// `ServingLoop` with a payload engine: every computed block gets the `KeyPayload` of (request, block
/// index), and before each step every block a planned request already computed must still carry its
/// payload. Preemption by swap (`TierSwapSpace`) must bring the bytes back into the new blocks;
/// preemption by recompute rewrites them.
@Suite("Serving loop and the swap space over host slots")
struct ServingLoopTests {
    static let layout = try! KVGeometry(layers: 2, kvHeads: 1, headDim: 8, dtype: .fp16, blockTokens: 4)

    /// The payload of block `index` of request `id`.
    static func key(_ id: SequenceID, _ index: Int) -> BlockKey { BlockKey(lo: UInt64(bitPattern: id.raw) + 1, hi: UInt64(index) + 1) }

    /// Writes payloads for what each step computes and counts the computed blocks found wrong.
    struct PayloadEngine: KVEngine {
        let cache: KVCacheManager
        let memory: HostDeviceMemory
        var wrong = 0, checked = 0

        mutating func check(_ id: SequenceID, computed: Int) throws(KVCacheError) {
            let table = try cache.blockTable(id)
            for i in 0 ..< min(table.count, (computed + Self.bt - 1) / Self.bt) {
                let same = memory.withBlock(table[i]) { KeyPayload.matches(UnsafeRawBufferPointer($0), key: ServingLoopTests.key(id, i)) }
                if same != true { wrong += 1 }
                checked += 1
            }
        }

        mutating func write(_ id: SequenceID, from: Int, to: Int) throws(KVCacheError) {
            let table = try cache.blockTable(id)
            for i in from / Self.bt ..< (to + Self.bt - 1) / Self.bt {
                _ = memory.withBlock(table[i]) { KeyPayload.fill($0, key: ServingLoopTests.key(id, i)) }
            }
        }

        static var bt: Int { ServingLoopTests.layout.blockTokens }

        /// Returns the step's sampled count (nothing is sampled for real).
        mutating func execute(_ plan: StepPlan) throws(KVCacheError) -> Int {
            for p in plan.prefills {
                try check(p.id, computed: p.contextBefore)
                try write(p.id, from: p.contextBefore, to: p.contextBefore + p.tokens)
            }
            for d in plan.decodes {
                try check(d.id, computed: d.context)
                try write(d.id, from: d.context, to: d.context + 1)
            }
            return plan.samplerCount
        }
    }

    /// Runs 4 requests (unique prompts of 10 tokens, 24 output tokens) through a 14-block pool under
    /// on-demand reservation, which preempts as requests grow; with a seed, `requests` requests of random
    /// prompt and output lengths, arriving over time, through a pool of random size and step budget.
    static func run(swapBlocks: Int, seed: UInt64? = nil, requests: Int = 4) throws
        -> (engine: PayloadEngine, stats: SchedulerStats, finished: Int, swap: TierSwapSpace?) {
        var rng = SplitMix64(seed: seed ?? 0)
        func draw(_ range: ClosedRange<Int>) -> Int { seed == nil ? range.upperBound : range.lowerBound + Int(rng.next() % UInt64(range.count)) }
        let blocks = seed == nil ? 14 : draw(10 ... 24)
        let cache = try KVCacheManager(KVCacheConfig(blockTokens: layout.blockTokens, capacityBlocks: blocks))
        let memory = try HostDeviceMemory(layout: layout, capacityBlocks: blocks)
        var config = SchedulerConfig()
        config.reservation = .onDemand
        if seed != nil { config.maxBatchedTokens = draw(8 ... 64) }
        let scheduler = Scheduler(config: config, cache: cache)
        let swap = swapBlocks > 0 ? try TierSwapSpace(device: memory, capacityBlocks: swapBlocks) : nil
        let loop = ServingLoop(scheduler: scheduler, engine: PayloadEngine(cache: cache, memory: memory),
                               tiers: ServingTiers(swapSpace: swap)) { _ in nil }
        var pending = (0 ..< requests).map { r in
            (arrival: seed == nil ? 0 : draw(0 ... 40),
             request: SchedulerRequest(id: SequenceID(Int64(r)), prompt: .tokens((0 ..< draw(1 ... 10)).map { UInt32(r * 100 + $0) }),
                                       maxTokens: draw(1 ... 24), arrival: 0))
        }
        var finished = 0, steps = 0
        while !loop.isIdle || !pending.isEmpty {
            for p in pending where p.arrival <= steps { try loop.submit(p.request) }
            pending.removeAll { $0.arrival <= steps }
            let ran = try loop.step(now: Double(steps))
            try #require(ran != nil || !pending.isEmpty, "no progress")
            finished += loop.finished.count
            steps += 1
            try cache.validate()
            try swap?.validate()
        }
        return (loop.engine, scheduler.stats, finished, swap)
    }

    @Test func swappedRequestsGetTheirBytesBack() throws {
        let (engine, stats, finished, swap) = try Self.run(swapBlocks: 32)
        #expect(finished == 4)
        #expect(stats.swappedOutTokens > 0, "the pool must be small enough to swap")
        #expect(swap!.swappedInBlocks > 0 && swap!.swappedOutBlocks >= swap!.swappedInBlocks)
        #expect(engine.checked > 0 && engine.wrong == 0, "\(engine.wrong) of \(engine.checked) blocks lost their bytes")
        #expect(swap!.freeBlocks == 32, "every slot is back once the requests finished")
    }

    /// Random workloads, swap space of random size (none included): every request finishes, and no
    /// computed block ever holds another request's bytes or lost its own.
    @Test(arguments: 1 ... 12)
    func randomWorkloadsKeepEveryBlocksBytes(seed: Int) throws {
        let swapBlocks = [0, 3, 12, 64][seed % 4]
        let (engine, _, finished, swap) = try Self.run(swapBlocks: swapBlocks, seed: UInt64(seed), requests: 10)
        #expect(finished == 10)
        #expect(engine.checked > 0 && engine.wrong == 0, "\(engine.wrong) of \(engine.checked) blocks wrong")
        if let swap { #expect(swap.freeBlocks == swapBlocks) }
    }

    @Test func recomputeRewritesAndAFullSwapSpaceFallsBackToIt() throws {
        let (plain, plainStats, plainFinished, _) = try Self.run(swapBlocks: 0)
        #expect(plainFinished == 4 && plainStats.preemptions > 0 && plainStats.swappedOutTokens == 0)
        #expect(plain.wrong == 0)
        // Too few slots for any request: every preemption recomputes.
        let (tight, tightStats, _, swap) = try Self.run(swapBlocks: 1)
        #expect(tightStats.swappedOutTokens == 0 && tight.wrong == 0 && swap!.swappedOutBlocks == 0)
    }

    @Test func reservationsAreAllOrNothingAndReleasesWaitForTheNextPerform() throws {
        let memory = try HostDeviceMemory(layout: Self.layout, capacityBlocks: 4)
        let swap = try TierSwapSpace(device: memory, capacityBlocks: 3)
        let a = SequenceID(1), b = SequenceID(2)
        #expect(swap.reserve(a, blocks: 2) && !swap.reserve(a, blocks: 1) && !swap.reserve(b, blocks: 2))
        #expect(swap.reserve(b, blocks: 1) && swap.freeBlocks == 0)
        swap.release(a)
        #expect(swap.freeBlocks == 0 && !swap.reserve(SequenceID(3), blocks: 1))  // held until the next perform
        try swap.validate()
        try swap.perform(StepPlan())
        #expect(swap.freeBlocks == 2)
        try swap.validate()
        var plan = StepPlan()
        plan.swapIns.append(.init(id: SequenceID(9), blocks: [0], tokens: 4))
        #expect(throws: TierError.self) { try swap.perform(plan) }   // no slots for it
    }

    /// Samples token `n` for a request's n-th sampled token (1, 2, 3, ...).
    struct CountingEngine: KVEngine {
        var counts: [SequenceID: UInt32] = [:]
        mutating func execute(_ plan: StepPlan) -> [UInt32] {
            let ids = plan.prefills.filter(\.samples).map(\.id) + plan.decodes.map(\.id)
            return ids.map { id in
                counts[id, default: 0] += 1
                return counts[id]!
            }
        }
    }

    @Test func requestsStopAtTheirLimitTheirKnownLengthOrAStopToken() throws {
        let cache = try KVCacheManager(KVCacheConfig(blockTokens: 4, capacityBlocks: 64))
        let loop = ServingLoop(scheduler: Scheduler(config: SchedulerConfig(), cache: cache), engine: CountingEngine(),
                               stopTokens: [5])
        let prompt: [UInt32] = [1, 2, 3, 4, 5, 6]
        let cases: [(maxTokens: Int?, known: Int?, expected: [UInt32])] = [
            (3, nil, [1, 2, 3]),          // max tokens
            (9, 2, [1, 2]),               // a known output length below the limit
            (9, nil, [1, 2, 3, 4, 5]),    // the stop token
            (nil, 0, [1]),                // a known length of 0 still samples one token
        ]
        for (i, c) in cases.enumerated() {
            try loop.submit(SchedulerRequest(id: SequenceID(Int64(i)), prompt: .tokens(prompt.map { $0 + UInt32(10 * i) }),
                                             maxTokens: c.maxTokens, arrival: 0, knownOutputTokens: c.known))
        }
        var reasons: [SequenceID: FinishReason] = [:]
        while !loop.isIdle {
            try #require(try loop.step(now: 0) != nil, "no progress")
            for f in loop.finished { reasons[f.id] = f.reason }
        }
        for (i, c) in cases.enumerated() {
            #expect(loop.take(SequenceID(Int64(i))) == c.expected, "case \(i)")
        }
        #expect(reasons.count == cases.count)
        #expect(throws: ServingLoop<CountingEngine>.Failure.self) {
            try loop.submit(SchedulerRequest(id: SequenceID(9), prompt: .tokens([]), maxTokens: 1, arrival: 0))
        }
    }
}
