import Foundation
import KVData
import Testing
import KVCache
@testable import KVSimulation

struct SequentialReplayTests {
    /// The roofline's Llama-3-8B on H100 marginals, the replay's price of a hit.
    static let llamaH100 = RooflineCostModel(model: .llama3_8B, hardware: .h100_80GB).recomputeCost

    /// The replay semantics written as plainly as possible: dictionaries and linear scans.
    struct ReferenceReplay {
        var cached: [UInt64: (parent: UInt64?, stamp: Int, depth: Int)] = [:]
        var now = 0
        var hit = 0, input = 0, evicted = 0, peak = 0
        /// Recompute seconds of the hit blocks, block by block.
        var saved = 0.0
        let capacity: Int, B: Int

        init(capacity: Int, B: Int) { self.capacity = capacity; self.B = B }

        mutating func replay(_ r: TraceRequest) {
            now += 1
            var k = 0
            while k < r.hashIDs.count && cached[r.hashIDs[k]] != nil { k += 1 }
            hit += min(k * B, r.inputTokens)
            for i in 0 ..< k where i * B < r.inputTokens {
                saved += SequentialReplayTests.llamaH100.seconds(tokens: min(B, r.inputTokens - i * B), contextBefore: i * B)
            }
            input += r.inputTokens
            for (i, id) in r.hashIDs.enumerated() {
                cached[id] = (i == 0 ? nil : r.hashIDs[i - 1], now, i + 1)
            }
            let chain = Set(r.hashIDs)
            while cached.count > capacity {
                let parents = Set(cached.values.compactMap(\.parent))
                let leaves = cached.filter { !parents.contains($0.key) && !chain.contains($0.key) }
                if let victim = leaves.min(by: { ($0.value.stamp, -$0.value.depth) < ($1.value.stamp, -$1.value.depth) }) {
                    cached[victim.key] = nil
                } else {
                    let tail = r.hashIDs.last { cached[$0] != nil }!
                    cached[tail] = nil
                }
                evicted += 1
            }
            peak = max(peak, cached.count)
        }
    }

    /// Random traces whose hash ids form a consistent prefix tree (one parent per id), with
    /// multi-turn conversations extending earlier prompts.
    func randomTrace(seed: UInt64, requests: Int, B: Int) -> [TraceRequest] {
        var rng = SplitMix64(seed: seed)
        var nextID: UInt64 = 0
        var chains: [[UInt64]] = []
        var out: [TraceRequest] = []
        for _ in 0 ..< requests {
            var chain: [UInt64] = []
            if !chains.isEmpty && Int.random(in: 0 ..< 3, using: &rng) > 0 {
                let base = chains.randomElement(using: &rng)!
                chain = Array(base.prefix(Int.random(in: 0 ... base.count, using: &rng)))
            }
            for _ in 0 ..< Int.random(in: 1 ... 6, using: &rng) { chain.append(nextID); nextID += 1 }
            chains.append(chain)
            let input = (chain.count - 1) * B + Int.random(in: 1 ... B, using: &rng)
            out.append(TraceRequest(arrival: 0, inputTokens: input, outputTokens: 1, hashIDs: chain, hashBlockTokens: B))
        }
        return out
    }


    @Test(arguments: [(1, 8), (2, 20), (3, 60), (4, 3), (5, 1000)])
    func matchesTheReferenceSemantics(seed: Int, capacity: Int) throws {
        let trace = randomTrace(seed: UInt64(seed), requests: 400, B: 16)
        var replay = try SequentialReplay(capacityBlocks: capacity, blockTokens: 16, recomputeCost: Self.llamaH100)
        var reference = ReferenceReplay(capacity: capacity, B: 16)
        for r in trace {
            try replay.replay(r)
            reference.replay(r)
        }
        try replay.manager.validate()
        #expect(replay.result.hitTokens == reference.hit)
        #expect(replay.result.inputTokens == reference.input)
        #expect(replay.result.evictedBlocks == reference.evicted)
        #expect(replay.result.peakBlocks == reference.peak)
        #expect(replay.result.hitTokens > 0)
        #expect(abs(replay.result.savedPrefillSeconds - reference.saved) <= 1e-9 * reference.saved)
    }

    @Test(arguments: [(11, 8), (12, 20), (13, 60), (14, 3)])
    func pgdsfKeepsTheInvariantsAndSavesWhatItHits(seed: Int, capacity: Int) throws {
        let trace = randomTrace(seed: UInt64(seed), requests: 400, B: 16)
        let cost = try RecomputeCost(secondsPerToken: 1e-5, secondsPerContextPair: 1e-7)
        var pgdsf = try SequentialReplay(capacityBlocks: capacity, blockTokens: 16, policy: .pgdsf, recomputeCost: cost)
        var unbounded = try SequentialReplay(capacityBlocks: 10_000, blockTokens: 16, policy: .pgdsf, recomputeCost: cost)
        var lru = try SequentialReplay(capacityBlocks: 10_000, blockTokens: 16, policy: .lru, recomputeCost: cost)
        for r in trace {
            try pgdsf.replay(r)
            try pgdsf.manager.validate()
            #expect(pgdsf.manager.stats.cachedBlocks <= capacity)
            try unbounded.replay(r)
            try lru.replay(r)
        }
        #expect(pgdsf.result.hitTokens > 0 && pgdsf.result.evictedBlocks > 0)
        // Nothing is evicted without pressure, whatever the policy.
        #expect(unbounded.result.hitTokens == lru.result.hitTokens)
        #expect(unbounded.result.savedPrefillSeconds == lru.result.savedPrefillSeconds)
        #expect(pgdsf.result.hitTokens <= unbounded.result.hitTokens)
        #expect(pgdsf.result.savedPrefillSeconds <= unbounded.result.savedPrefillSeconds)
    }

    @Test func handWorkedExample() throws {
        // Capacity 3 blocks of 10 tokens.
        let rows = [
            TraceRequest(arrival: 0, inputTokens: 25, outputTokens: 1, hashIDs: [1, 2, 3], hashBlockTokens: 10),
            TraceRequest(arrival: 0, inputTokens: 15, outputTokens: 1, hashIDs: [1, 4], hashBlockTokens: 10),  // hit 10; evicts 3
            TraceRequest(arrival: 0, inputTokens: 25, outputTokens: 1, hashIDs: [1, 2, 3], hashBlockTokens: 10), // hit 20; evicts 4
            TraceRequest(arrival: 0, inputTokens: 45, outputTokens: 1, hashIDs: [5, 6, 7, 8, 9], hashBlockTokens: 10), // evicts 3,2,1 + drops 8,9
        ]
        var replay = try SequentialReplay(capacityBlocks: 3, blockTokens: 10, recomputeCost: Self.llamaH100)
        for r in rows { try replay.replay(r) }
        #expect(replay.result.hitTokens == 30)
        #expect(replay.result.inputTokens == 110)
        #expect(replay.result.evictedBlocks == 1 + 1 + 3 + 2)
        #expect(replay.result.peakBlocks == 3)
    }

    @Test func mooncakeReaderNamesBadLines() throws {
        let good = #"{"timestamp": 1000, "input_length": 1000, "output_length": 5, "hash_ids": [0, 1]}"#
        let text = [good, "", #"{"timestamp": 2000, "input_length": 10, "output_length": 5}"#,
                    #"{"timestamp": 2000, "input_length": -1, "output_length": 5, "hash_ids": []}"#,
                    #"{"timestamp": 2000, "input_length": 1500, "output_length": 5, "hash_ids": [0, 1]}"#,
                    "not json"].joined(separator: "\n")
        #expect(throws: DataError.badLine(path: "t.jsonl", line: 3, reason: "missing field \"hash_ids\"")) {
            try Mooncake.read(ByteSource(bytes: Array(text.utf8), name: "t.jsonl"))
        }
        let skipped = try Mooncake.read(ByteSource(bytes: Array(text.utf8), name: "t.jsonl"), skipBadLines: true)
        #expect(skipped.requests.count == 1 && skipped.skippedLines == 4)
        #expect(skipped.requests[0] == TraceRequest(arrival: 0, inputTokens: 1000, outputTokens: 5, hashIDs: [0, 1], hashBlockTokens: 512))
        #expect(throws: DataError.empty(path: "e")) { try Mooncake.read(ByteSource(bytes: [], name: "e")) }
    }
}
