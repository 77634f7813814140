import KVCache
import KVPlan
import KVScheduler
import Testing
@testable import KVReferenceEngine

/// The reference engine executing the scheduler's step plans (`KVEngine`): requests batched in chunked
/// prefills and interleaved decodes produce the tokens each prompt gives on its own.
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
        let scheduler = Scheduler(config: config, cache: engine.cache)
        for (i, p) in prompts.enumerated() {
            let id = SequenceID(Int64(i))
            engine.plan(id, prompt: p)
            try scheduler.submit(SchedulerRequest(id: id, prompt: .tokens(p), maxTokens: maxTokens, arrival: 0))
        }
        var produced = [Int](repeating: 0, count: prompts.count)
        var sawMixedStep = false
        while !scheduler.isIdle {
            let plan = try scheduler.schedule(now: 0)
            try #require(!plan.isEmpty, "no progress")
            if !plan.prefills.isEmpty && !plan.decodes.isEmpty { sawMixedStep = true }
            let tokens = try engine.execute(plan)
            #expect(tokens.count == plan.samplerCount)
            var stops: [Bool] = []
            for id in plan.prefills.filter(\.samples).map(\.id) + plan.decodes.map(\.id) {
                produced[Int(id.raw)] += 1
                stops.append(produced[Int(id.raw)] >= maxTokens)
            }
            try scheduler.complete(stops: stops, tokenIDs: tokens, now: 0)
            try engine.cache.validate()
        }
        #expect(sawMixedStep, "the schedule must interleave prefills and decodes")
        for (i, p) in prompts.enumerated() {
            let scheduled = Array(engine.forget(SequenceID(Int64(i))).dropFirst(p.count))
            let alone = try ReferenceEngine(model: m.model, tokenizer: m.tokenizer, capacityBlocks: 32)
                .generate(prompt: p, maxTokens: maxTokens, stopAtEOS: false)
            #expect(scheduled == alone.tokens, "prompt \(i)")
        }
    }
}
