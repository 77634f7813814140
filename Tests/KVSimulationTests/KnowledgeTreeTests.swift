import KVCache
import KVData
import Testing
@testable import KVSimulation

/// The knowledge tree on hand-built paths whose hits, victims and clocks are known, and a model-based
/// run over random paths that checks every invariant after every request.
@Suite struct KnowledgeTreeTests {
    /// One second per computed token, no attention term: every request's cost per new token is 1.
    static let linear = try! RecomputeCost(secondsPerToken: 1, secondsPerContextPair: 0)

    static func tree(gpu: Int, host: Int, _ policy: KnowledgeTree.Policy, cost: RecomputeCost = linear,
                     hostSeconds: Double = 0.1) throws -> KnowledgeTree {
        try KnowledgeTree(.init(gpuBlocks: gpu, hostBlocks: host, blockTokens: 1, policy: policy, cost: cost,
                                hostSecondsPerToken: hostSeconds))
    }

    static func steps(_ ids: [(UInt64, Int)]) -> [KnowledgeTree.Step] { ids.map { .init(identity: $0.0, tokens: $0.1) } }

    static let S: (UInt64, Int) = (1, 4), A: (UInt64, Int) = (2, 6), B: (UInt64, Int) = (3, 6)

    @Test func evictedNodeGoesToHostOnceAndIsLoadedBack() throws {
        var t = try Self.tree(gpu: 10, host: 10, .lru)
        var s = t.serve(Self.steps([Self.S, Self.A]), promptTokens: 12)
        #expect(s == .init(gpuHitTokens: 0, hostHitTokens: 0, computedTokens: 12, savedSeconds: 0))
        s = t.serve(Self.steps([Self.S, Self.B]), promptTokens: 12)
        #expect(s.gpuHitTokens == 4 && s.hostHitTokens == 0 && s.computedTokens == 8)
        #expect(t.residency(of: Self.steps([Self.S, Self.A]))! == (false, true))
        // A comes back from the host; B has to leave the GPU, and the host (full of A, which is in use)
        // cannot take it, so it is dropped.
        s = t.serve(Self.steps([Self.S, Self.A]), promptTokens: 12)
        #expect(s.gpuHitTokens == 4 && s.hostHitTokens == 6 && s.computedTokens == 2)
        #expect(abs(s.savedSeconds - (10 - 0.6)) < 1e-9)
        #expect(t.residency(of: Self.steps([Self.S, Self.B]))! == (false, false))
        #expect(t.residency(of: Self.steps([Self.S, Self.A]))! == (true, true))
        // A keeps its host copy: pushing it out of the GPU again copies nothing.
        _ = t.serve(Self.steps([Self.S, Self.B]), promptTokens: 12)
        #expect(t.residency(of: Self.steps([Self.S, Self.A]))! == (false, true))
        #expect(t.counters.swapOuts == 1 && t.counters.swapOutTokens == 6)
        #expect(t.counters.gpuEvictions == 3 && t.counters.drops == 1)
        try t.validate()
    }

    @Test func pgdsfKeepsTheFrequentNodeWhereLRUKeepsTheRecentOne() throws {
        let C: (UInt64, Int) = (4, 5), A: (UInt64, Int) = (2, 5), B: (UInt64, Int) = (3, 5)
        var hits: [KnowledgeTree.Policy: Int] = [:]
        for policy in KnowledgeTree.Policy.allCases {
            var t = try Self.tree(gpu: 14, host: 0, policy)
            for path in [[Self.S, A], [Self.S, A], [Self.S, B], [Self.S, C]] { _ = t.serve(Self.steps(path), promptTokens: 9) }
            hits[policy] = t.serve(Self.steps([Self.S, A]), promptTokens: 9).hitTokens
            if policy == .pgdsf {
                // B (frequency 1 x cost 1) left first and set the GPU clock to its price.
                #expect(t.gpuClock == 1)
                #expect(t.residency(of: Self.steps([Self.S, B]))! == (false, false))
            }
            try t.validate()
        }
        #expect(hits[.lru] == 4)
        #expect(hits[.pgdsf] == 9)
    }

    @Test func prefixAwareCostKeepsTheDocumentComputedInALongContext() throws {
        // Attention term only: a request computing t new tokens after h hits costs h + (t + 1) / 2 per token.
        let pairs = try RecomputeCost(secondsPerToken: 0, secondsPerContextPair: 1)
        let long: (UInt64, Int) = (5, 40), D: (UInt64, Int) = (6, 4), E: (UInt64, Int) = (7, 4), F: (UInt64, Int) = (8, 4)
        for policy in KnowledgeTree.Policy.allCases {
            var t = try Self.tree(gpu: 48, host: 0, policy, cost: pairs)
            _ = t.serve(Self.steps([long]), promptTokens: 40)
            _ = t.serve(Self.steps([long, E]), promptTokens: 44)  // E after a 40-token hit: 42.5 per token
            _ = t.serve(Self.steps([D]), promptTokens: 4)  // D alone: 2.5 per token; the GPU is full
            _ = t.serve(Self.steps([F]), promptTokens: 4)  // evicts E (older) under lru, D (cheaper) under pgdsf
            #expect(t.residency(of: Self.steps([long, E]))!.gpu == (policy == .pgdsf))
            #expect(t.residency(of: Self.steps([D]))!.gpu == (policy == .lru))
            #expect(t.residency(of: Self.steps([F]))!.gpu)
            if policy == .pgdsf { #expect(t.gpuClock == 2.5) }
            try t.validate()
        }
    }

    @Test func rejectsBadConfigurations() {
        #expect(throws: CacheModelError.self) { try Self.tree(gpu: -1, host: 0, .lru) }
        #expect(throws: CacheModelError.self) { try Self.tree(gpu: 1, host: 0, .lru, hostSeconds: .nan) }
        #expect(throws: CacheModelError.self) {
            try KnowledgeTree(.init(gpuBlocks: 1, hostBlocks: 0, blockTokens: 0, policy: .lru, cost: Self.linear, hostSecondsPerToken: 0))
        }
    }

    /// Random paths over a few documents: invariants hold after every request; tokens add up; hits
    /// never exceed those of an unbounded cache, and equal them when the GPU holds everything.
    @Test(arguments: KnowledgeTree.Policy.allCases) func modelBasedRandomPaths(policy: KnowledgeTree.Policy) throws {
        var rng = SplitMix64(seed: 13)
        for round in 0 ..< 40 {
            let big = round % 8 == 0
            let gpu = big ? 1 << 20 : Int(rng.next() % 60), host = Int(rng.next() % 60)
            var t = try KnowledgeTree(.init(gpuBlocks: gpu, hostBlocks: host, blockTokens: 1 + Int(rng.next() % 4),
                                            policy: policy, cost: try RecomputeCost(secondsPerToken: 1e-3, secondsPerContextPair: 1e-6),
                                            hostSecondsPerToken: 1e-4))
            var seen: Set<[UInt64]> = []
            for _ in 0 ..< 60 {
                let n = 1 + Int(rng.next() % 4)
                var path = [KnowledgeTree.Step(identity: rng.next() % 2, tokens: 8)]
                for _ in 0 ..< n { let d = 10 + rng.next() % 6; path.append(.init(identity: d, tokens: Int(d))) }
                let prompt = path.reduce(0) { $0 + $1.tokens } + Int(rng.next() % 5)
                var unbounded = 0
                for k in path.indices {
                    guard seen.contains(path[...k].map(\.identity)) else { break }
                    unbounded += path[k].tokens
                }
                for k in path.indices { seen.insert(path[...k].map(\.identity)) }
                let s = t.serve(path, promptTokens: prompt)
                #expect(s.hitTokens + s.computedTokens == prompt)
                #expect(s.hitTokens <= unbounded)
                if big { #expect(s.hitTokens == unbounded && s.hostHitTokens == 0) }
                try t.validate()
            }
        }
    }
}

/// The knowledge-tree replay of a RAGPulse trace small enough to follow by hand.
@Suite struct KnowledgeTreeReplayTests {
    static func trace() throws -> RAGPulse.Trace {
        let (_, path) = try RAGPulseTests.folder(trace: [
            RAGPulseTests.line(10, 200, sys: [1], passages: [10, 11], user: [30]),
            RAGPulseTests.line(12, 180, sys: [1], passages: [10, 11], user: [31]),
            RAGPulseTests.line(15, 120, sys: [2], passages: [10], web: [40], user: [30]),
            RAGPulseTests.line(20, 190, sys: [1], passages: [11, 10], history: [20], user: [31]),
        ])
        return try RAGPulse.load(path: path)
    }

    static func config(gpu: Int, _ policy: KnowledgeTree.Policy = .lru) -> KnowledgeTree.Config {
        .init(gpuBlocks: gpu, hostBlocks: 0, blockTokens: 10, policy: policy, cost: KnowledgeTreeTests.linear,
              hostSecondsPerToken: 0)
    }

    @Test func pathsAreTheSystemPromptThenThePassages() throws {
        let t = try Self.trace()
        // Unbounded: request 2 hits sys 1 + passages 10, 11 (170); request 4 hits sys 1 only (100).
        let big = try KnowledgeTreeReplay.run(t, config: Self.config(gpu: 1000), validateEvery: 1)
        #expect(big.hitTokens == 270 && big.gpuHitTokens == 270 && big.requests == 4 && big.promptTokens == 690)
        #expect(big.pathTokens == 170 + 170 + 80 + 170)
        #expect(big.savedSeconds == 170 + 100)
        // 17 blocks hold request 1's path exactly; request 3 pushes it all out under lru (passage 11, then
        // 10, then sys 1), and request 4 (sys 1, passages 11, 10: 17 blocks) pushes out request 3's two.
        let small = try KnowledgeTreeReplay.run(t, config: Self.config(gpu: 17), validateEvery: 1)
        #expect(small.hitTokens == 170)
        #expect(small.counters.gpuEvictions == 5 && small.counters.drops == 5)
    }

    @Test func warmUpRequestsAreNotCounted() throws {
        let t = try Self.trace()
        let r = try KnowledgeTreeReplay.run(t, config: Self.config(gpu: 1000), range: 0 ..< 4, countFrom: 3)
        #expect(r.requests == 1 && r.hitTokens == 100 && r.promptTokens == 190)
        #expect(throws: CacheModelError.self) { try KnowledgeTreeReplay.run(t, config: Self.config(gpu: 1), range: 0 ..< 5) }
    }
}

extension KnowledgeTreeReplayTests {
    @Test func passagesFirstLayoutReusesDocumentsAcrossSystemPrompts() throws {
        let t = try Self.trace()
        // Paths: [10, 11, 1], [10, 11, 1] (hit 170), [10, 2] (hit 30), [11, 10, 1] (no hit).
        let r = try KnowledgeTreeReplay.run(t, config: Self.config(gpu: 1000), layout: .passagesFirst, validateEvery: 1)
        #expect(r.hitTokens == 170 + 30)
        #expect(r.pathTokens == 170 + 170 + 80 + 170)
    }
}
