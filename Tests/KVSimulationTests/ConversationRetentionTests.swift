import KVCache
import KVData
import KVScheduler
import Testing
@testable import KVSimulation

/// Pensieve's retention in the timed engine (`ConversationRetention` through `ModelledEngine`).
@Suite struct ConversationRetentionTests {
    static let blockBytes = Double(ModelSpec.llama3_8B.kvBytesPerToken * 16)

    /// A turn of conversation `session` whose prompt's full 16-token blocks are keyed by the session and
    /// the block index (as the ShareGPT reader keys them).
    static func turn(_ session: String, at arrival: Double, prompt: Int, output: Int = 1) -> TraceRequest {
        let h = StableHash.fnv1a(session)
        return TraceRequest(arrival: arrival, inputTokens: prompt, outputTokens: output,
                            hashIDs: (0 ..< prompt / 16).map { StableHash.combine(h, UInt64($0)) }, hashBlockTokens: 16,
                            session: session)
    }

    static func config(blocks: Int, hostBlocks: Int, retention: PensieveRetention.Policy?,
                       threshold: Double = 0, reservation: ReservationPolicy = .onDemand) -> ModelledRunConfig {
        var c = ModelledRunConfig(model: .llama3_8B, hardware: .h100_80GB, kvBytes: Double(blocks) * blockBytes)
        c.maxTokens = 512
        c.scheduler.reservation = reservation
        c.hostTierBytes = Double(hostBlocks) * blockBytes
        c.retention = retention
        c.retentionSwapThreshold = threshold
        c.reportsConversations = true
        c.chargesHostWrites = true
        c.validatesEveryStep = true
        return c
    }

    /// Modelled seconds of a step computing `tokens` prompt tokens after `context`, copying `hostBlocks`.
    static func step(_ tokens: Int, after context: Int, hostBlocks: Int) -> Double {
        var w = StepWork()
        w.addPrefill(tokens: tokens, contextBefore: context)
        w.hostTransferBytes = Double(hostBlocks) * blockBytes
        return RooflineCostModel(model: .llama3_8B, hardware: .h100_80GB).stepSeconds(w)
    }

    /// Twelve blocks, two host blocks, each turn alone (one output token: one step). a1, b1 (4 blocks)
    /// and c1 (6 blocks) leave 14 blocks of context for 12: c1's step moves a's two leading chunks to
    /// the host (a has idled longest). a2 (4 history blocks: 2 in the host, 2 in the GPU) needs 6
    /// blocks, so 4 of b's chunks must go: two to the host, and the host, full, drops b's leading two
    /// to take the next two. b2 then recomputes b's 32 dropped leading tokens with its 16 new ones,
    /// loads its 2 host chunks, and moves 5 of c's chunks out (c idled longer than a).
    @Test func knownVictimsRecomputeAndHostHitsAndStepTimes() throws {
        let trace = [Self.turn("a", at: 0, prompt: 64), Self.turn("b", at: 10, prompt: 64), Self.turn("c", at: 20, prompt: 96),
                     Self.turn("a", at: 30, prompt: 96), Self.turn("b", at: 40, prompt: 80)]
        let report = try ModelledEngine(config: Self.config(blocks: 12, hostBlocks: 2, retention: .pensieve))
            .run(trace, predictor: nil)
        #expect(report.requests == 5 && report.rejected == 0 && report.preemptions == 0)
        let c = try #require(report.conversations)
        #expect(c.conversations == 3 && c.turns == 5)
        #expect(c.historyTokens == 128 && c.gpuHitTokens == 32 && c.hostHitTokens == 64 && c.recomputedTokens == 32)
        #expect(c.swappedBlocks == 2 + 4 + 5 && c.aheadOfTimeBlocks == 0 && c.droppedBlocks == 2 + 3)
        #expect(c.hostHitRate == 0.5)
        // Every prompt token is computed except the history the GPU and the host supplied.
        #expect(report.prefillTokens == 64 + 64 + 96 + 32 + 48)
        #expect(c.hostLinkBytes == Double(2 + (2 + 4) + (2 + 5)) * Self.blockBytes)
        // Each turn's TTFT is its one step: prefill priced after the reused context, plus its host copies.
        let expected: [Int64: Double] = [
            0: Self.step(64, after: 0, hostBlocks: 0), 1: Self.step(64, after: 0, hostBlocks: 0),
            2: Self.step(96, after: 0, hostBlocks: 2), 3: Self.step(32, after: 64, hostBlocks: 2 + 4),
            4: Self.step(48, after: 32, hostBlocks: 2 + 5),
        ]
        for l in report.latencies { #expect(abs(l.ttft - expected[l.id]!) < 1e-12, "request \(l.id)") }
        // Moves to the host not charged: the same figures, and each step pays its loads only.
        var free = Self.config(blocks: 12, hostBlocks: 2, retention: .pensieve)
        free.chargesHostWrites = false
        let loadsOnly = try ModelledEngine(config: free).run(trace, predictor: nil)
        #expect(loadsOnly.conversations == report.conversations)
        let a2 = try #require(loadsOnly.latencies.first { $0.id == 3 })
        #expect(abs(a2.ttft - Self.step(32, after: 64, hostBlocks: 2)) < 1e-12)
    }

    /// Where cost over idle time and idle time part: a1 and b1 run in one step and finish together, so
    /// when c1 needs 2 of their 8 blocks they are equally idle. Pensieve drops a's leading chunk, then
    /// b's (a's next chunk sits deeper, so it costs more to recompute); LRU empties a from the front.
    /// a2 then recomputes 16 tokens under pensieve and 32 under LRU; at a2, b (idle longest) loses its
    /// chunks up to the fourth under both, so b2 recomputes 48 either way.
    @Test(arguments: [PensieveRetention.Policy.pensieve, .lru])
    func costOverIdleTimeSpreadsEvictionsWhereLRUEmptiesTheOldest(policy: PensieveRetention.Policy) throws {
        let trace = [Self.turn("a", at: 0, prompt: 64), Self.turn("b", at: 0, prompt: 64), Self.turn("c", at: 10, prompt: 96),
                     Self.turn("a", at: 20, prompt: 80), Self.turn("b", at: 30, prompt: 80)]
        let report = try ModelledEngine(config: Self.config(blocks: 12, hostBlocks: 0, retention: policy))
            .run(trace, predictor: nil)
        let c = try #require(report.conversations)
        let a2Recomputed = policy == .pensieve ? 16 : 32
        #expect(c.historyTokens == 128 && c.hostHitTokens == 0)
        #expect(c.recomputedTokens == a2Recomputed + 48 && c.gpuHitTokens == 128 - a2Recomputed - 48)
        let a2 = try #require(report.latencies.first { $0.id == 3 })
        #expect(abs(a2.ttft - Self.step(a2Recomputed + 16, after: 64 - a2Recomputed, hostBlocks: 0)) < 1e-12)
    }

    /// Without host memory the same victims are dropped: a2 recomputes a's 2 dropped leading chunks.
    @Test func withoutHostMemoryVictimsAreDroppedAndRecomputed() throws {
        let trace = [Self.turn("a", at: 0, prompt: 64), Self.turn("b", at: 10, prompt: 64), Self.turn("c", at: 20, prompt: 96),
                     Self.turn("a", at: 30, prompt: 96)]
        let report = try ModelledEngine(config: Self.config(blocks: 12, hostBlocks: 0, retention: .pensieve))
            .run(trace, predictor: nil)
        let c = try #require(report.conversations)
        #expect(c.historyTokens == 64 && c.gpuHitTokens == 32 && c.hostHitTokens == 0 && c.recomputedTokens == 32)
        #expect(c.swappedBlocks == 0 && c.droppedBlocks == 2 + 4)
        let a2 = try #require(report.latencies.first { $0.id == 3 })
        #expect(abs(a2.ttft - Self.step(64, after: 32, hostBlocks: 0)) < 1e-12)
    }

    /// Ahead of time: with a 50% threshold, b1's step leaves 4 of 12 blocks free (< 6), so a's two
    /// leading chunks move to the host then, and c1 finds its room free: its step copies nothing.
    @Test func swapsAheadOfTimeWhenFreeBlocksFallBelowTheThreshold() throws {
        let trace = [Self.turn("a", at: 0, prompt: 64), Self.turn("b", at: 10, prompt: 64), Self.turn("c", at: 20, prompt: 96)]
        let report = try ModelledEngine(config: Self.config(blocks: 12, hostBlocks: 2, retention: .pensieve, threshold: 0.5))
            .run(trace, predictor: nil)
        let c = try #require(report.conversations)
        #expect(c.aheadOfTimeBlocks == 2 && c.swappedBlocks == 0 && c.droppedBlocks == 0)
        let b1 = try #require(report.latencies.first { $0.id == 1 }), c1 = try #require(report.latencies.first { $0.id == 2 })
        #expect(abs(b1.ttft - Self.step(64, after: 0, hostBlocks: 2)) < 1e-12)
        #expect(abs(c1.ttft - Self.step(96, after: 0, hostBlocks: 0)) < 1e-12)
    }

    /// Random conversations with think time, sessions and hash chains (overlapping turns), every
    /// retention policy, with and without host memory and ahead-of-time swapping: the engine checks
    /// the cache's and the retention's invariants (blocks held by running requests plus retained GPU
    /// chunks within the pool) after every step and finish.
    @Test(arguments: [PensieveRetention.Policy.pensieve, .lru, .prefixLRU])
    func blockAccountingHoldsOnRandomMultiTurnTraces(policy: PensieveRetention.Policy) throws {
        for seed in UInt64(1) ... 4 {
            for sessions in [true, false] {
                let trace = Self.randomConversations(seed: seed, sessions: sessions)
                for (blocks, host, threshold) in [(80, 0, 0.25), (120, 60, 0.25), (200, 400, 0.5)] {
                    var config = Self.config(blocks: blocks, hostBlocks: host, retention: policy, threshold: threshold,
                                             reservation: seed % 2 == 0 ? .onDemand : .predicted)
                    config.sessionThinkSeconds = sessions ? 2 : nil
                    let report = try ModelledEngine(config: config).run(trace, predictor: nil)
                    #expect(report.requests + report.rejected == trace.count)
                    let c = try #require(report.conversations)
                    #expect(c.gpuHitTokens + c.hostHitTokens + c.recomputedTokens == c.historyTokens)
                    if host == 0 { #expect(c.hostHitTokens == 0 && c.swappedBlocks == 0 && c.aheadOfTimeBlocks == 0) }
                }
            }
        }
    }

    /// With room for every conversation, the retention and the prefix cache under LRU serve the same
    /// history from the GPU, so the runs are the same step for step.
    @Test(arguments: [ReservationPolicy.onDemand, .predicted])
    func aHugeCacheGivesTheSameRunAsThePrefixCache(reservation: ReservationPolicy) throws {
        for seed in UInt64(1) ... 3 {
            let trace = Self.randomConversations(seed: seed, sessions: true)
            var results: [ModelledRunReport] = []
            for retention in [nil, PensieveRetention.Policy.pensieve, .lru] {
                var config = Self.config(blocks: 20_000, hostBlocks: 1_000, retention: retention, threshold: 0.25, reservation: reservation)
                config.sessionThinkSeconds = 2
                results.append(try ModelledEngine(config: config).run(trace, predictor: nil))
            }
            let lru = results[0]
            for r in results.dropFirst() {
                let a = try #require(lru.conversations), b = try #require(r.conversations)
                #expect(b.historyTokens == a.historyTokens && b.gpuHitTokens == a.gpuHitTokens && b.recomputedTokens == 0)
                #expect(a.recomputedTokens == 0 && b.hostHitTokens == 0 && b.swappedBlocks + b.aheadOfTimeBlocks + b.droppedBlocks == 0)
                #expect(r.prefillTokens == lru.prefillTokens && r.steps == lru.steps && r.preemptions == lru.preemptions)
                #expect(r.makespan == lru.makespan && r.outputTokensPerSecond == lru.outputTokensPerSecond)
                #expect(r.latencies.map(\.ttft) == lru.latencies.map(\.ttft) && r.latencies.map(\.id) == lru.latencies.map(\.id))
            }
        }
    }

    /// Conversations of 1-6 turns, each prompt the previous prompt, its reply and a new message. With
    /// `sessions`, ShareGPT-like (session keys); otherwise Mooncake-like: no sessions, hash chains that
    /// extend the previous turn's, turns arriving at their own random times (they may overlap).
    static func randomConversations(seed: UInt64, sessions: Bool) -> [TraceRequest] {
        var rng = SplitMix64(seed: seed)
        var out: [TraceRequest] = []
        var nextID: UInt64 = 1
        for c in 0 ..< 24 {
            var prompt = 20 + Int(rng.next() % 400)
            var time = Double(c) * 0.7
            var ids: [UInt64] = []
            for _ in 0 ..< 1 + Int(rng.next() % 6) {
                let output = 1 + Int(rng.next() % 200)
                if sessions {
                    out.append(Self.turn("s\(seed)-\(c)", at: time, prompt: prompt, output: output))
                } else {
                    while ids.count < prompt / 16 { ids.append(nextID); nextID += 1 }
                    out.append(TraceRequest(arrival: time, inputTokens: prompt, outputTokens: output,
                                            hashIDs: Array(ids.prefix(prompt / 16)), hashBlockTokens: 16))
                }
                prompt += output + 10 + Int(rng.next() % 300)
                time += 0.2 + Double(rng.next() % 100) / 20
            }
        }
        return out.sorted { $0.arrival < $1.arrival }
    }
}
