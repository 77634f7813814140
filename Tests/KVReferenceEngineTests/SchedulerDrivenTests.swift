import KVCache
import KVPlan
import KVRuntime
import KVScheduler
import KVTiers
import Testing
@testable import KVReferenceEngine

/// The reference engine executing the scheduler's step plans (`KVEngine`) under `ServingLoop`: requests
/// batched in chunked prefills and interleaved decodes produce the tokens each prompt gives on its own
/// (`generate`, today's path).
@Suite("engine under the scheduler", .enabled(if: TestModel.isAvailable, TestModel.missingMessage))
struct SchedulerDrivenTests {
    @Test("scheduled prompts, chunked and interleaved, generate what each generates alone")
    func scheduledRunsMatchSeparateRuns() throws {
        let m = try TestModel.require()
        let texts = ["Name three colors.", "Why cache KV?", "Name three colors. Then count to five."]
        let prompts = texts.map { m.tokenizer.encode(ChatTemplate.render(user: $0)) }
        let maxTokens = 6
        let engine = try ReferenceEngine(model: m.model, tokenizer: m.tokenizer, capacityBlocks: 32)
        var config = SchedulerConfig()
        config.maxBatchedTokens = 24   // prompts take several chunks, decodes run beside them
        let loop = ServingLoop(scheduler: Scheduler(config: config, cache: engine.cache), engine: engine)
        for (i, p) in prompts.enumerated() {
            let id = SequenceID(Int64(i))
            engine.plan(id, prompt: p)
            try loop.submit(SchedulerRequest(id: id, prompt: .tokens(p), maxTokens: maxTokens, arrival: 0))
        }
        var sawMixedStep = false
        var finished: Set<SequenceID> = []
        while !loop.isIdle {
            let ran = try #require(try loop.step(now: 0), "no progress")
            if !ran.plan.prefills.isEmpty && !ran.plan.decodes.isEmpty { sawMixedStep = true }
            #expect(ran.outcome.count == ran.plan.samplerCount)
            finished.formUnion(loop.finished.map(\.id))
            try engine.cache.validate()
        }
        #expect(finished.count == prompts.count)
        #expect(sawMixedStep, "the schedule must interleave prefills and decodes")
        for (i, p) in prompts.enumerated() {
            let scheduled = Array(engine.forget(SequenceID(Int64(i))).dropFirst(p.count))
            #expect(loop.take(SequenceID(Int64(i))) == scheduled)
            let alone = try ReferenceEngine(model: m.model, tokenizer: m.tokenizer, capacityBlocks: 32)
                .generate(prompt: p, maxTokens: maxTokens, stopAtEOS: false)
            #expect(scheduled == alone.tokens, "prompt \(i)")
        }
    }

    @Test("scheduled over host tiers: a prompt evicted from the pool is loaded back and generates the same tokens")
    func scheduledOverTiersLoadsTheEvictedPrompt() throws {
        let m = try TestModel.require()
        let bt = 16, maxTokens = 4
        func engine(_ capacity: Int) throws -> ReferenceEngine {
            // Chunks of two blocks: the loaded run computes its last 8 prompt tokens in the same call as
            // the cold one (see TieredEngineTests), so the tokens must match exactly.
            try ReferenceEngine(model: m.model, tokenizer: m.tokenizer, blockTokens: bt, capacityBlocks: capacity,
                                prefillChunkTokens: 2 * bt)
        }
        let a = Array(m.tokenizer.encode(
            "A prompt that the scheduler admits first, whose two full blocks the next request pushes out of the "
            + "small pool into host memory, and which then comes back from there instead of being computed, "
            + "so that the words the model writes after it stay exactly the ones it writes on its own.").prefix(40))
        let b = Array(m.tokenizer.encode(
            "Another request that shares nothing with the first one and needs every block of the pool for itself, "
            + "so that the first prompt's cached blocks must leave the device for the tier below, copied down "
            + "by the tier manager before the pool hands the same blocks to this request.").prefix(40))
        try #require(a.count == 40 && b.count == 40)
        let alone = try engine(32).generate(prompt: a, maxTokens: maxTokens, stopAtEOS: false)

        let served = try engine(3)   // one request's worth of blocks
        let memory = PagedKVPoolMemory(pool: served.pool)
        let tiers = try KVTierManager(config: TieredEngineTests.tierConfig(memory, hostBlocks: 8), device: memory)
        defer { tiers.close() }
        try served.attachTiers(tiers)
        let loop = ServingLoop(scheduler: Scheduler(config: SchedulerConfig(), cache: served.cache), engine: served,
                               tiers: try ServingTiers(tiers: tiers))
        #expect(served.cache.evictionObserver === tiers && loop.scheduler.prefixLoadSource === loop.tiers.prefixLoadSource)
        for (i, p) in [a, b, a].enumerated() {
            let id = SequenceID(Int64(i))
            try Self.submit(p, as: id, maxTokens: maxTokens, to: loop)
            try Self.runUntilIdle(loop)
            tiers.waitForTransfers()
            let out = Array(served.forget(id).dropFirst(p.count))
            if i != 1 { #expect(out == alone.tokens, "request \(i)") }
        }
        let source = try #require(loop.tiers.tierPrefixSource)
        #expect(source.loaded.hostBlocks == 2 && source.loaded.failedBlocks == 0)
        #expect(loop.scheduler.stats.prefixLoadedTokens == 2 * bt)
        #expect(tiers.statistics.host.loadedBlocks == 2)
        try tiers.validate()
    }

    @Test("preempted by swap: the engine's KV goes to the swap space and back, and every request generates its own tokens")
    func swappedRequestsGenerateTheirOwnTokens() throws {
        let m = try TestModel.require()
        let bt = 16, maxTokens = 24
        let texts = ["Name three colors.", "Why cache KV?", "Count to five, slowly."]
        let prompts = texts.map { m.tokenizer.encode(ChatTemplate.render(user: $0)) }
        let alone = try prompts.map {
            try ReferenceEngine(model: m.model, tokenizer: m.tokenizer, blockTokens: bt, capacityBlocks: 32)
                .generate(prompt: $0, maxTokens: maxTokens, stopAtEOS: false).tokens
        }
        // Each request ends at prompt + 24 tokens, 3-4 blocks; a pool of 7 holds two at most, so the running
        // requests outgrow it under on-demand reservation and the newest is preempted.
        let capacity = 7
        let served = try ReferenceEngine(model: m.model, tokenizer: m.tokenizer, blockTokens: bt, capacityBlocks: capacity)
        let memory = PagedKVPoolMemory(pool: served.pool)
        let tiers = try KVTierManager(config: TieredEngineTests.tierConfig(memory, hostBlocks: 8), device: memory)
        defer { tiers.close() }
        try served.attachTiers(tiers)
        var config = SchedulerConfig()
        config.reservation = .onDemand
        let loop = ServingLoop(scheduler: Scheduler(config: config, cache: served.cache), engine: served,
                               tiers: try ServingTiers(tiers: tiers, swapBlocks: 16))
        let swap = try #require(loop.swapSpace)
        for (i, p) in prompts.enumerated() { try Self.submit(p, as: SequenceID(Int64(i)), maxTokens: maxTokens, to: loop) }
        try Self.runUntilIdle(loop) { try swap.validate() }
        #expect(loop.scheduler.stats.swappedOutTokens > 0, "the pool must be small enough to swap")
        #expect(swap.swappedInBlocks > 0 && swap.swappedOutBlocks >= swap.swappedInBlocks)
        #expect(swap.freeBlocks == 16, "every slot is back once the requests finished")
        for (i, p) in prompts.enumerated() {
            let id = SequenceID(Int64(i))
            let generated = Array(served.forget(id).dropFirst(p.count))
            #expect(generated == alone[i], "request \(i)")
            #expect(loop.take(id) == alone[i], "request \(i)")
        }
    }
    /// Tells the engine the prompt (`plan`) and submits it to the loop at time 0.
    static func submit(_ prompt: [UInt32], as id: SequenceID, maxTokens: Int,
                       to loop: ServingLoop<ReferenceEngine>) throws {
        loop.engine.plan(id, prompt: prompt)
        try loop.submit(SchedulerRequest(id: id, prompt: .tokens(prompt), maxTokens: maxTokens, arrival: 0))
    }

    /// Steps the loop until nothing is left, checking the cache (and `check`) after every step.
    static func runUntilIdle(_ loop: ServingLoop<ReferenceEngine>, check: () throws -> Void = {}) throws {
        while !loop.isIdle {
            _ = try #require(try loop.step(now: 0), "no progress")
            try loop.engine.cache.validate()
            try check()
        }
    }
}
