import KVCache
import KVData
import KVPlan
import KVRuntime
import KVScheduler
import Testing
@testable import KVSimulation

/// The modelled engine's step (`ModelledStep`) driven by `ServingLoop.step` gives the figures of
/// `ModelledEngine.run` (its event clock around the loop's phases) on the same requests (all arriving at
/// 0, no fast forward, no session gating): same steps, makespan, preemptions, prefix hits and output tokens.
@Suite struct ServingLoopModelledTests {
    @Test(arguments: [(ReservationPolicy.onDemand, UInt64(3)), (.predicted, 5), (.worstCase, 7)])
    func servingLoopMatchesTheModelledEngine(policy: ReservationPolicy, seed: UInt64) throws {
        var rng = SplitMix64(seed: seed)
        // Shared prefixes (hash ids), so prefix hits count too.
        let trace = (0 ..< 80).map { _ in
            let shared = (0 ..< Int(rng.next() % 4)).map { UInt64($0) }
            let own = (0 ..< 1 + Int(rng.next() % 6)).map { _ in 1000 + rng.next() % 100_000 }
            return TraceRequest(arrival: 0, inputTokens: (shared.count + own.count) * 64, outputTokens: 1 + Int(rng.next() % 400),
                                hashIDs: shared + own, hashBlockTokens: 64)
        }
        var config = ModelledRunConfig(model: .llama3_8B, hardware: .h100_80GB, kvBytes: 0.25 * 1_073_741_824)
        config.maxTokens = 256
        config.scheduler.reservation = policy
        config.fastForward = false
        config.sessionThinkSeconds = nil
        let report = try ModelledEngine(config: config).run(trace, predictor: nil)

        let engine = ModelledEngine(config: config)
        let cache = try KVCacheManager(KVCacheConfig(blockTokens: config.blockTokens, capacityBlocks: config.capacityBlocks))
        let scheduler = Scheduler(config: config.scheduler, cache: cache)
        let step = ModelledStep(costModel: engine.costModel,
                                kvBytesPerBlock: Double(config.model.kvBytesPerToken * config.blockTokens))
        let loop = ServingLoop(scheduler: scheduler, engine: step)
        for (i, r) in trace.enumerated() {
            let keys = TracePromptKeys.keys(for: r, index: i, blockTokens: config.blockTokens)
            try loop.submit(SchedulerRequest(id: SequenceID(Int64(i)), prompt: .keys(keys, tokenCount: r.inputTokens),
                                             maxTokens: config.maxTokens, arrival: 0,
                                             knownOutputTokens: max(1, min(config.maxTokens, r.outputTokens))))
        }
        var t = 0.0, steps = 0, outputTokens = 0, finished = 0, rejected = 0
        while !loop.isIdle {
            let ran = try loop.step(now: t)
            for f in loop.finished {
                if f.reason == .capacity { rejected += 1 } else { finished += 1; outputTokens += f.outputTokens }
            }
            guard let ran else { break }
            t += ran.outcome
            steps += 1
        }
        #expect(loop.isIdle)
        #expect(finished == report.requests && rejected == report.rejected)
        // Plans made: the modelled engine plans once more, finding nothing to run, before it stops.
        #expect(scheduler.stats.steps == steps && steps + 1 == report.steps)
        #expect(abs(t - report.makespan) <= 1e-9 * max(1, t), "\(t) vs \(report.makespan)")
        #expect(scheduler.stats.preemptions == report.preemptions)
        #expect(scheduler.stats.prefixHitTokens == report.prefixHitTokens && report.prefixHitTokens > 0)
        #expect(outputTokens == report.outputTokens)
        if policy == .onDemand { #expect(report.preemptions > 0, "the pool must be small enough to preempt") }
    }
}
