import KVCache
import KVData
import Testing
@testable import KVSimulation

/// The offline bound: its next-use table, a hand-worked trace whose optimal victims are known, and
/// the bound holding against every online policy on random conversation traces.
struct BeladyReplayTests {
    static let cost = SequentialReplayTests.llamaH100

    static func request(_ ids: [UInt64], B: Int = 10) -> TraceRequest {
        TraceRequest(arrival: 0, inputTokens: ids.count * B, outputTokens: 1, hashIDs: ids, hashBlockTokens: B)
    }

    static func replay(_ trace: [TraceRequest], policy: ReplayPolicy, capacity: Int, B: Int = 10) throws -> SequentialReplay {
        let instance = try policy.make(capacity: capacity, cost: cost) { SequentialReplay.nextUseTable(trace, blockTokens: B) }
        var replay = try SequentialReplay(capacityBlocks: capacity, blockTokens: B, policy: instance, recomputeCost: cost)
        for r in trace {
            try replay.replay(r)
            try replay.manager.validate()
            #expect(replay.manager.stats.cachedBlocks <= capacity)
        }
        return replay
    }

    @Test func nextUseTableLooksAheadOnePass() {
        let k = (0 ..< 4).map { BlockKey(lo: UInt64($0) + 1, hi: 1) }
        let t = NextUseTable(requests: [[k[0], k[1]], [k[2]], [k[0]], [], [k[1], k[0]]])
        #expect(t.count == 5)
        #expect(Array(t.nextUses(of: 0)) == [2, 4])
        #expect(Array(t.nextUses(of: 1)) == [NextUseTable.never])
        #expect(Array(t.nextUses(of: 2)) == [4])
        #expect(Array(t.nextUses(of: 3)).isEmpty)
        #expect(Array(t.nextUses(of: 4)) == [NextUseTable.never, NextUseTable.never])
        #expect(Array(t.keys(of: 4)) == [k[1], k[0]])
    }

    @Test func handWorkedExampleEvictsTheFurthestNextUse() throws {
        // Capacity 3 blocks of 10 tokens. After request 1, the pool holds 1 2 3 | 4 must enter:
        // 3 is next used at request 4, 2 at request 3, so Belady evicts 3 (LRU would too, being the
        // deepest of the oldest stamp). Request 2 brings 5: 4 is never used again and goes first,
        // although it is the most recently used block (LRU evicts 2 instead, and misses at request 3).
        let trace = [[1, 2, 3], [1, 4], [1, 5], [1, 2], [1, 2, 3]].map { Self.request($0.map(UInt64.init)) }
        let belady = try Self.replay(trace, policy: .belady, capacity: 3)
        let lru = try Self.replay(trace, policy: .lru, capacity: 3)
        // Belady: hits 0, 10, 10, 20 (1 2 kept), 20 (3 was evicted): 60 tokens.
        #expect(belady.result.hitTokens == 60)
        #expect(lru.result.hitTokens < belady.result.hitTokens)
    }

    @Test(arguments: [(21, 3), (22, 8), (23, 20), (24, 60)])
    func theBoundHoldsAgainstEveryOnlinePolicy(seed: Int, capacity: Int) throws {
        let trace = SequentialReplayTests().randomTrace(seed: UInt64(seed), requests: 300, B: 16)
        let bound = try Self.replay(trace, policy: .belady, capacity: capacity, B: 16).result
        #expect(bound.hitTokens > 0 && bound.evictedBlocks > 0)
        for policy in ReplayPolicy.allCases where !policy.isOffline {
            let online = try Self.replay(trace, policy: policy, capacity: capacity, B: 16).result
            #expect(online.hitTokens <= bound.hitTokens, "\(policy) at \(capacity) blocks")
            #expect(online.inputTokens == bound.inputTokens)
        }
    }

    @Test func policyListsParseAndRefuseUnknownNames() throws {
        #expect(try ReplayPolicy.list("lru,pgdsf-probation,belady") == [.lru, .pgdsfProbation, .belady])
        #expect(throws: ReplayPolicyError.self) { try ReplayPolicy.list("lru,,belady") }
        #expect(throws: ReplayPolicyError.self) { try ReplayPolicy.list("opt") }
        #expect(ReplayPolicy.belady.kind == nil && ReplayPolicy.pgdsf.kind == .pgdsf)
    }
}
