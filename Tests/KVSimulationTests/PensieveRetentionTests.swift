import KVCache
import KVData
import Testing
@testable import KVSimulation

/// Pensieve's retention on hand-built conversations whose victims are known, and a model-based run over
/// random conversations that checks every invariant after every turn.
@Suite struct PensieveRetentionTests {
    /// Attention term only: chunk k of 10 tokens costs 10 x (10k + 5.5) = 100k + 55 seconds.
    static let pairs = try! RecomputeCost(secondsPerToken: 0, secondsPerContextPair: 1)

    static func retention(gpu: Int, host: Int, _ policy: PensieveRetention.Policy, threshold: Double = 0) throws -> PensieveRetention {
        try PensieveRetention(.init(gpuChunks: gpu, hostChunks: host, chunkTokens: 10, policy: policy, cost: pairs,
                                    hostSecondsPerToken: 0.5, swapThreshold: threshold))
    }

    /// Conversation 0 (`first` tokens) at 0 s, then 1 and 2 (20 tokens each) at 1 s and 2 s.
    static func serveThree(_ p: inout PensieveRetention, first: Int) {
        _ = p.serve(conversation: 0, now: 0, promptTokens: first, outputTokens: 0)
        _ = p.serve(conversation: 1, now: 1, promptTokens: 20, outputTokens: 0)
        _ = p.serve(conversation: 2, now: 2, promptTokens: 20, outputTokens: 0)
    }

    @Test func pensieveDropsCheapLeadingChunksOfIdleConversationsWhereLRUDropsTheOldest() throws {
        for policy in [PensieveRetention.Policy.lru, .pensieve] {
            var p = try Self.retention(gpu: 6, host: 0, policy)
            // Conversation 2 needs 2 chunks. pensieve: conversation 0's chunk 0 (55 / 2 idle s), then
            // conversation 1's chunk 0 (55 / 1) before conversation 0's chunk 1 (155 / 2).
            Self.serveThree(&p, first: 40)
            let lru = policy == .lru
            #expect(p.chunkCounts(of: 0)! == (lru ? (2, 0, 2) : (1, 0, 3)))
            #expect(p.chunkCounts(of: 1)! == (lru ? (0, 0, 2) : (1, 0, 1)))
            let s = p.serve(conversation: 0, now: 3, promptTokens: 50, outputTokens: 0)
            #expect(s.historyTokens == 40 && s.newTokens == 10)
            #expect(s.recomputedTokens == (lru ? 20 : 10) && s.gpuHitTokens == (lru ? 20 : 30) && s.hostHitTokens == 0)
            // Recomputed leading tokens at context 0, the new ones after the 40-token history.
            #expect(s.prefillSeconds == Self.pairs.seconds(tokens: s.recomputedTokens, contextBefore: 0)
                    + Self.pairs.seconds(tokens: 10, contextBefore: 40))
            try p.validate()
        }
    }

    @Test func prefixLRUDropsTrailingChunksAndRecomputesThemAfterThePrefix() throws {
        var p = try Self.retention(gpu: 6, host: 0, .prefixLRU)
        Self.serveThree(&p, first: 40)
        #expect(p.chunkCounts(of: 0)! == (2, 0, 2))
        let s = p.serve(conversation: 0, now: 3, promptTokens: 50, outputTokens: 0)
        #expect(s.gpuHitTokens == 20 && s.recomputedTokens == 20 && s.newTokens == 10)
        // The dropped tail is recomputed after the 20-token prefix: dearer than a dropped head.
        #expect(s.prefillSeconds == Self.pairs.seconds(tokens: 20, contextBefore: 20) + Self.pairs.seconds(tokens: 10, contextBefore: 40))
        try p.validate()
    }

    @Test func evictedChunksGoToTheHostAndAreLoadedBack() throws {
        var p = try Self.retention(gpu: 4, host: 2, .lru)
        Self.serveThree(&p, first: 20)
        #expect(p.chunkCounts(of: 0)! == (0, 2, 0))
        let s = p.serve(conversation: 0, now: 3, promptTokens: 25, outputTokens: 5)
        #expect(s.hostHitTokens == 20 && s.recomputedTokens == 0 && s.gpuHitTokens == 0 && s.newTokens == 5)
        #expect(s.prefillSeconds == 20 * 0.5 + Self.pairs.seconds(tokens: 5, contextBefore: 20))
        // Conversation 0 now holds 3 GPU chunks: conversation 1 went to the host, then conversation 2's
        // first chunk, for which the host dropped conversation 1's leading chunk.
        #expect(p.chunkCounts(of: 0)! == (0, 0, 3))
        #expect(p.chunkCounts(of: 1)! == (1, 1, 0))
        #expect(p.chunkCounts(of: 2)! == (0, 1, 1))
        #expect(p.counters == .init(swappedChunks: 5, aheadOfTimeChunks: 0, droppedChunks: 1))
        try p.validate()
    }

    @Test func swapsAheadOfTimeBelowTheFreeThreshold() throws {
        var p = try Self.retention(gpu: 4, host: 4, .lru, threshold: 0.25)
        _ = p.serve(conversation: 0, now: 0, promptTokens: 20, outputTokens: 0)
        #expect(p.counters.aheadOfTimeChunks == 0)
        _ = p.serve(conversation: 1, now: 1, promptTokens: 15, outputTokens: 5)
        #expect(p.counters.aheadOfTimeChunks == 1)
        #expect(p.chunkCounts(of: 0)! == (0, 1, 1))
        #expect(p.gpuUsed == 3 && p.hostUsed == 1)
        try p.validate()
    }

    @Test func rejectsBadConfigurations() {
        #expect(throws: CacheModelError.self) { try Self.retention(gpu: 0, host: 0, .lru) }
        #expect(throws: CacheModelError.self) { try Self.retention(gpu: 1, host: -1, .lru) }
        #expect(throws: CacheModelError.self) { try Self.retention(gpu: 1, host: 0, .lru, threshold: 2) }
    }

    /// Random conversations: tokens add up, invariants hold after every turn, and with a GPU that holds
    /// everything nothing is recomputed or loaded.
    @Test(arguments: PensieveRetention.Policy.allCases) func modelBasedRandomConversations(policy: PensieveRetention.Policy) throws {
        var rng = SplitMix64(seed: 4)
        for round in 0 ..< 30 {
            let big = round % 6 == 0
            var p = try PensieveRetention(.init(
                gpuChunks: big ? 1 << 20 : 1 + Int(rng.next() % 40), hostChunks: Int(rng.next() % 30),
                chunkTokens: 1 + Int(rng.next() % 16), policy: policy, cost: Self.pairs, hostSecondsPerToken: 1e-3,
                swapThreshold: Double(rng.next() % 5) / 8))
            var context = [Int](repeating: 0, count: 8)
            var now = 0.0
            for _ in 0 ..< 80 {
                let c = Int(rng.next() % 8)
                now += Double(rng.next() % 100) / 10
                let prompt = context[c] + 1 + Int(rng.next() % 60), output = Int(rng.next() % 40)
                let s = p.serve(conversation: c, now: now, promptTokens: prompt, outputTokens: output)
                #expect(s.historyTokens == context[c])
                #expect(s.gpuHitTokens + s.hostHitTokens + s.recomputedTokens == s.historyTokens)
                #expect(s.historyTokens + s.newTokens == prompt)
                #expect(min(s.gpuHitTokens, s.hostHitTokens, s.recomputedTokens) >= 0)
                if big { #expect(s.gpuHitTokens == s.historyTokens) }
                context[c] = prompt + output
                try p.validate()
            }
        }
    }
    /// The victim trees pick exactly the chunks the scan of the cached list picks: random conversations
    /// under every policy, with equal times (ties), turns at the same instant, flat and steep chunk costs,
    /// compared turn by turn on every figure and every conversation's chunk layout.
    @Test(arguments: PensieveRetention.Policy.allCases) func victimTreesPickTheScansVictims(policy: PensieveRetention.Policy) throws {
        var rng = SplitMix64(seed: 13)
        let flat = try RecomputeCost(secondsPerToken: 1, secondsPerContextPair: 1e-4)
        for round in 0 ..< 40 {
            let conversations = 2 + Int(rng.next() % 60)
            let config = PensieveRetention.Config(
                gpuChunks: 1 + Int(rng.next() % 80), hostChunks: Int(rng.next() % 60), chunkTokens: 1 + Int(rng.next() % 16),
                policy: policy, cost: round % 2 == 0 ? Self.pairs : flat, hostSecondsPerToken: 1e-3,
                swapThreshold: Double(rng.next() % 5) / 8)
            var tree = try PensieveRetention(config), scan = try PensieveRetention(config)
            scan.scansForVictims = true
            var context = [Int](repeating: 0, count: conversations)
            var now = 0.0
            for turn in 0 ..< 300 {
                let c = Int(rng.next() % UInt64(conversations))
                // Whole seconds (many equal idle times), fractions, and repeats of the same instant.
                switch rng.next() % 3 {
                case 0: now += Double(rng.next() % 4)
                case 1: now += Double(rng.next() % 1000) / 997
                default: break
                }
                let prompt = context[c] + 1 + Int(rng.next() % 50), output = Int(rng.next() % 30)
                let a = tree.serve(conversation: c, now: now, promptTokens: prompt, outputTokens: output)
                let b = scan.serve(conversation: c, now: now, promptTokens: prompt, outputTokens: output)
                context[c] = prompt + output
                #expect(a == b, "round \(round) turn \(turn)")
                #expect(tree.counters == scan.counters, "round \(round) turn \(turn)")
                for x in 0 ..< conversations {
                    let u = tree.chunkCounts(of: x), v = scan.chunkCounts(of: x)
                    #expect(u?.dropped == v?.dropped && u?.host == v?.host && u?.gpu == v?.gpu, "round \(round) turn \(turn) conversation \(x)")
                }
                try tree.validate()
                if a != b || tree.counters != scan.counters { return }
            }
        }
    }

    /// Two conversations whose order changes with time: at 9.5 s the long-idle one's dear chunk is worth
    /// less, by 10.5 s the cheap chunk of the one active at 9 s is.
    @Test func victimTreeFollowsOrderChangesOverTime() throws {
        var t = PensieveVictimTree(order: .costOverIdle)
        t.set(0, cost: 10, since: 0, tie: 0, now: 1)
        t.set(1, cost: 1, since: 9, tie: 1, now: 9)
        #expect(t.minimum(now: 9.5) == 0)       // 10 / 9.5 against 1 / 0.5
        #expect(t.minimum(now: 10.5) == 1)      // 10 / 10.5 against 1 / 1.5
        t.remove(1, now: 11)
        #expect(t.minimum(now: 11) == 0)
        t.set(2, cost: 10, since: 0, tie: 2, now: 11)   // equal values: the lower tie
        #expect(t.minimum(now: 12) == 0)
        t.set(2, cost: 10, since: 0, tie: -1, now: 12)
        #expect(t.minimum(now: 12) == 2)
        #expect(t.minimum(now: 5) == 2)         // an earlier time re-decides every node
        try t.validate()
    }
}

/// The replay's timeline and totals on a three-conversation trace without times.
@Suite struct PensieveReplayTests {
    static func request(_ session: String?, _ input: Int, _ output: Int) -> TraceRequest {
        TraceRequest(arrival: 0, inputTokens: input, outputTokens: output, session: session)
    }

    @Test func conversationsStartApartAndTurnsFollowAfterTheThinkTime() throws {
        let requests = [Self.request("a", 20, 10), Self.request("b", 10, 5), Self.request("a", 40, 5), Self.request(nil, 7, 1)]
        let t = PensieveReplay.timeline(requests, hasTimestamps: false, schedule: .init(conversationGapSeconds: 10, thinkSeconds: 100))
        #expect(t.conversation == [0, 1, 0, 2] && t.conversations == 3)
        #expect(t.time == [0, 10, 100, 20])
        let r = try PensieveReplay.run(requests, hasTimestamps: false, schedule: .init(conversationGapSeconds: 10, thinkSeconds: 100),
                                       config: .init(gpuChunks: 100, hostChunks: 0, chunkTokens: 10, policy: .pensieve,
                                                     cost: PensieveRetentionTests.pairs, hostSecondsPerToken: 0))
        // Only a's second turn has history: its first prompt and reply, 30 tokens, all in the GPU.
        #expect(r.turns == 4 && r.totals.historyTokens == 30 && r.totals.gpuHitTokens == 30 && r.totals.newTokens == 77 - 30)
        #expect(r.totals.recomputedTokens == 0 && r.hostHitRate == 0)
    }

    static func hashed(_ at: Double, _ input: Int, _ ids: [UInt64], output: Int = 10) -> TraceRequest {
        TraceRequest(arrival: at, inputTokens: input, outputTokens: output, hashIDs: ids, hashBlockTokens: 512)
    }

    /// Hash chains without sessions: a turn continues the conversation whose latest turn's complete
    /// blocks it starts with (the longest chain), reusing those blocks; a partial last block, a shared
    /// first block alone and a fork from an earlier turn do not link.
    @Test func hashChainsLinkTurnsOfAConversation() throws {
        let requests = [
            Self.hashed(0, 1300, [1, 2, 3]),       // a1: complete blocks [1, 2]
            Self.hashed(1, 2000, [1, 2, 5, 6]),    // a2 continues a1 on 2 blocks; complete [1, 2, 5]
            Self.hashed(2, 600, [1, 9]),           // b1: [1] is no request's complete chain
            Self.hashed(4, 2100, [1, 2, 5, 7, 8]), // a3 continues a2 on 3 blocks
            Self.hashed(3, 1536, [1, 2, 8]),       // c1 (arrives before a3): forks from a1, which a2 followed
            Self.hashed(5, 100, [3]),              // d1: a partial block never links
            Self.hashed(6, 200, [3]),              // e1
            TraceRequest(arrival: 7, inputTokens: 50, outputTokens: 5),
        ]
        let t = PensieveReplay.timeline(requests, hasTimestamps: true, schedule: .init())
        #expect(t.conversation == [0, 0, 1, 0, 2, 3, 4, 5] && t.conversations == 6)
        #expect(t.reusable == [0, 1024, 0, 1536, 0, 0, 0, 0])
        let links = HashChainConversations.link(Array(requests[0 ..< 3]), order: [0, 1, 2])
        #expect(links.conversation == [0, 0, 1])
        // A GPU that holds everything: a2 and a3 hit exactly their shared blocks, nothing else has history.
        let r = try PensieveReplay.run(requests, hasTimestamps: true,
                                       config: .init(gpuChunks: 1 << 16, hostChunks: 0, chunkTokens: 32, policy: .pensieve,
                                                     cost: PensieveRetentionTests.pairs, hostSecondsPerToken: 0))
        #expect(r.conversations == 6 && r.totals.historyTokens == 1024 + 1536 && r.totals.gpuHitTokens == 1024 + 1536)
        #expect(r.totals.recomputedTokens == 0)
    }
}
