import KVCache
import KVPlan
import KVRuntime
import KVScheduler
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
}
