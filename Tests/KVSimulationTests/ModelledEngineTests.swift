import KVCache
import KVPrediction
import KVScheduler
import KVData
import Testing
@testable import KVSimulation

/// A seeded synthetic workload: bursts of requests with varied prompts and outputs.
func syntheticTrace(_ n: Int, seed: UInt64) -> [TraceRequest] {
    var rng = SplitMix64(seed: seed)
    return (0..<n).map { i in
        TraceRequest(arrival: Double(i / 20) * 0.5, inputTokens: 50 + Int(rng.next() % 1500),
                     outputTokens: 1 + Int(rng.next() % 600))
    }
}

@Suite struct ModelledEngineTests {
    func config(_ policy: ReservationPolicy, kvGiB: Double = 0.5) -> ModelledRunConfig {
        var c = ModelledRunConfig(model: .llama3_8B, hardware: .h100_80GB, kvBytes: kvGiB * 1_073_741_824)
        c.maxTokens = 1024
        c.scheduler.reservation = policy
        return c
    }

    @Test(arguments: ReservationPolicy.allCases)
    func everyRequestCompletes(policy: ReservationPolicy) throws {
        let trace = syntheticTrace(300, seed: 9)
        let report = try ModelledEngine(config: config(policy)).run(trace, predictor: HistoryLengthPredictor())
        #expect(report.requests == 300 && report.rejected == 0)
        #expect(report.outputTokens == trace.reduce(0) { $0 + min($1.outputTokens, 1024) })
        #expect(report.makespan > 0 && report.ttftP50 <= report.ttftP99 && report.kvUtilizationMean <= 1)
        if policy == .worstCase { #expect(report.preemptions == 0) }
    }

    @Test(arguments: [ReservationPolicy.onDemand, .predicted])
    func fastForwardChangesNothing(policy: ReservationPolicy) throws {
        let trace = syntheticTrace(150, seed: 4)
        var slow = config(policy)
        slow.fastForward = false
        let a = try ModelledEngine(config: config(policy)).run(trace, predictor: HistoryLengthPredictor())
        let b = try ModelledEngine(config: slow).run(trace, predictor: HistoryLengthPredictor())
        #expect(a.outputTokens == b.outputTokens && a.preemptions == b.preemptions)
        #expect(a.preemptedTokens == b.preemptedTokens && a.steps == b.steps)
        #expect(abs(a.makespan - b.makespan) < 1e-6 * a.makespan)
        #expect(abs(a.ttftP99 - b.ttftP99) < 1e-6 * max(1, a.ttftP99))
    }

    @Test func memoryBoundOrdering() throws {
        // A small cache: reserving max_tokens starves the batch; the true lengths pack it best.
        let trace = syntheticTrace(400, seed: 17).map { r -> TraceRequest in var r = r; r.arrival = 0; return r }
        var results: [ReservationPolicy: ModelledRunReport] = [:]
        for p in ReservationPolicy.allCases {
            results[p] = try ModelledEngine(config: config(p, kvGiB: 0.4)).run(trace, predictor: HistoryLengthPredictor())
        }
        #expect(results[.worstCase]!.outputTokensPerSecond < results[.predicted]!.outputTokensPerSecond)
        #expect(results[.worstCase]!.meanRunning < results[.oracle]!.meanRunning)
        #expect(results[.onDemand]!.preemptions > 0)
        // Mispredictions make predicted requests outgrow their reservation; some wait rather than preempt.
        #expect(results[.predicted]!.extensions > 0)
        #expect(results[.predicted]!.preemptedTokens < results[.onDemand]!.preemptedTokens)
    }

    @Test func waitingForABlockRunsToTheEnd() throws {
        let trace = syntheticTrace(400, seed: 17).map { r -> TraceRequest in var r = r; r.arrival = 0; return r }
        var waiting = config(.predicted, kvGiB: 0.4)
        var preempting = waiting
        preempting.scheduler.stallHorizonSteps = 0
        waiting.scheduler.stallHorizonSteps = 4096
        let a = try ModelledEngine(config: waiting).run(trace, predictor: HistoryLengthPredictor())
        let b = try ModelledEngine(config: preempting).run(trace, predictor: HistoryLengthPredictor())
        #expect(a.stalls > 0 && b.stalls == 0)
        #expect(a.requests == 400 && b.requests == 400)
        // Whether waiting lowers the preemption count depends on the workload: on this synthetic one
        // it does for 8 of seeds 1-12 and not for the others, so only the mechanism is checked here.
    }

    @Test func swapSpaceMovesPreemptedKV() throws {
        var c = config(.onDemand, kvGiB: 0.3)
        c.swapBytes = 4 * 1_073_741_824
        let report = try ModelledEngine(config: c).run(syntheticTrace(200, seed: 5), predictor: nil)
        #expect(report.requests == 200)
        #expect(report.preemptions > 0 && report.preemptedTokens == 0)   // all preemptions swapped
    }

    @Test func invalidConfigurationsAreErrors() {
        #expect(throws: ModelledRunError.self) {
            try ModelledEngine(config: config(.onDemand, kvGiB: 0)).run(syntheticTrace(3, seed: 1), predictor: nil)
        }
    }
}

@Suite struct ProjectedAdmissionTests {
    @Test func exactLengthsNeverPreemptAndPackTighterThanStaticReservations() throws {
        let trace = syntheticTrace(400, seed: 23).map { r -> TraceRequest in var r = r; r.arrival = 0; return r }
        var projected = ModelledRunConfig(model: .llama3_8B, hardware: .h100_80GB, kvBytes: 0.4 * 1_073_741_824)
        projected.maxTokens = 1024
        projected.scheduler.reservation = .oracle
        var fixed = projected
        fixed.scheduler.projectedAdmission = false
        let a = try ModelledEngine(config: projected).run(trace, predictor: nil)
        let b = try ModelledEngine(config: fixed).run(trace, predictor: nil)
        #expect(a.preemptions == 0 && b.preemptions == 0)
        #expect(a.meanRunning > b.meanRunning)
        #expect(a.outputTokensPerSecond > b.outputTokensPerSecond)
    }
}

@Suite struct SessionGatingTests {
    @Test func laterTurnsWaitForTheirHistoryAndHitIt() throws {
        // Three two-turn conversations from the ShareGPT fixture style: turn 2 extends turn 1's prompt.
        var trace: [TraceRequest] = []
        for c in 0..<3 {
            let ids1 = (0..<10).map { UInt64(c * 1000 + $0) }
            let ids2 = ids1 + (10..<25).map { UInt64(c * 1000 + $0) }
            trace.append(TraceRequest(arrival: 0, inputTokens: 160, outputTokens: 40, hashIDs: ids1, hashBlockTokens: 16,
                                      session: "c\(c)"))
            trace.append(TraceRequest(arrival: 0, inputTokens: 400, outputTokens: 10, hashIDs: ids2, hashBlockTokens: 16,
                                      session: "c\(c)"))
        }
        var gated = ModelledRunConfig(model: .llama3_8B, hardware: .h100_80GB, kvBytes: 1_073_741_824)
        gated.scheduler.reservation = .onDemand
        gated.sessionThinkSeconds = 0.5
        var free = gated
        free.sessionThinkSeconds = nil
        let a = try ModelledEngine(config: gated).run(trace, predictor: nil)
        let b = try ModelledEngine(config: free).run(trace, predictor: nil)
        #expect(a.requests == 6 && b.requests == 6)
        // Gated: each second turn finds all 10 prompt blocks of its first turn in the cache.
        #expect(a.prefixHitTokens == 3 * 160)
        #expect(b.prefixHitTokens == 0)   // all arrive at once: nothing is cached yet
        #expect(a.makespan > 0.5)
    }
}
