import KVCache
import KVPlan
import KVRuntime
import KVScheduler
import Testing
@testable import KVReferenceEngine

/// The reference engine under `ServingLoop`: batched, chunked and interleaved by the scheduler, each
/// prompt generates what it generates alone (today's `generate`), and the EOS stop token ends a request
/// where `generate` stops.
@Suite("reference engine under the serving loop", .enabled(if: TestModel.isAvailable, TestModel.missingMessage))
struct ServingLoopEngineTests {
    @Test func servingLoopRunsMatchSeparateRuns() throws {
        let m = try TestModel.require()
        let texts = ["Name three colors.", "Why cache KV?", "Name three colors. Then count to five.", "Say hi."]
        let prompts = texts.map { m.tokenizer.encode(ChatTemplate.render(user: $0)) }
        let maxTokens = 8
        let engine = try ReferenceEngine(model: m.model, tokenizer: m.tokenizer, capacityBlocks: 48)
        var config = SchedulerConfig()
        config.maxBatchedTokens = 32
        let loop = ServingLoop(scheduler: Scheduler(config: config, cache: engine.cache), engine: engine,
                               stopTokens: Set([m.tokenizer.eosID].compactMap { $0 }))
        for (i, p) in prompts.enumerated() {
            engine.plan(SequenceID(Int64(i)), prompt: p)
            try loop.submit(SchedulerRequest(id: SequenceID(Int64(i)), prompt: .tokens(p), maxTokens: maxTokens, arrival: 0))
        }
        var finished: [SequenceID] = []
        var steps = 0
        while !loop.isIdle {
            try #require(try loop.step(now: 0) != nil, "no progress")
            finished += loop.finished.map(\.id)
            steps += 1
            try engine.cache.validate()
        }
        #expect(Set(finished) == Set(prompts.indices.map { SequenceID(Int64($0)) }))
        #expect(steps > prompts.count)   // batched and chunked, not one request per step
        for (i, p) in prompts.enumerated() {
            let id = SequenceID(Int64(i))
            let scheduled = loop.take(id)
            #expect(Array(engine.forget(id).dropFirst(p.count)) == scheduled)
            let alone = try ReferenceEngine(model: m.model, tokenizer: m.tokenizer, capacityBlocks: 48)
                .generate(prompt: p, maxTokens: maxTokens, stopAtEOS: true)
            #expect(scheduled == alone.tokens, "prompt \(i)")
        }
    }
}
