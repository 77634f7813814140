import KVCache
import KVData
import Testing
@testable import KVSimulation

/// The prefix tree and chunk store sharing one pool: unbounded, it equals the unbounded replay request by
/// request; bounded under LRU, it equals a naive model (every cached path in a dictionary, the victim found
/// by scanning) request by request; under both policies every invariant holds after every request.
@Suite struct ChunkPrefixCacheTests {
    static let linear = try! RecomputeCost(secondsPerToken: 1, secondsPerContextPair: 0.001)

    /// Random prompts over a few system prompts and passages (each id of one length, as in a trace), with
    /// duplicates inside a prompt now and then.
    static func prompts(seed: UInt64, count: Int) -> [[RAGPulse.Segment]] {
        var rng = SplitMix64(seed: seed)
        func draw(_ n: Int) -> Int { Int(rng.next() % UInt64(n)) }
        return (0 ..< count).map { _ in
            let sys = draw(3)
            var p = [RAGPulse.Segment(kind: .sysPrompt, id: Int64(sys), tokens: 20 + 10 * (sys % 2))]
            for _ in 0 ..< 1 + draw(4) {
                let id = Int64(draw(12))
                p.append(RAGPulse.Segment(kind: .passages, id: id, tokens: 5 + Int(id) % 7))
            }
            p.append(RAGPulse.Segment(kind: .userInput, id: Int64(draw(40)), tokens: 3))
            return p
        }
    }

    static func steps(_ p: [RAGPulse.Segment]) -> [KnowledgeTree.Step] { p.map { .init(identity: $0.identity, tokens: $0.tokens) } }

    @Test(arguments: [1, 2, 3] as [UInt64])
    func unboundedEqualsTheUnboundedReplay(seed: UInt64) throws {
        for policy in ChunkPrefixCache.Policy.allCases {
            var cache = try ChunkPrefixCache(.init(capacityBlocks: 1 << 30, blockTokens: 4, policy: policy, chunkReuse: true,
                                                   recomputeRatio: 0.15, cost: Self.linear))
            var replay = ChunkReuseReplay(recomputeRatio: 0.15)
            for (i, p) in Self.prompts(seed: seed, count: 300).enumerated() {
                let before = replay.result
                replay.replay(inputTokens: p.reduce(0) { $0 + $1.tokens }, segments: p[...])
                let served = cache.serve(Self.steps(p))
                #expect(served.prefixHitTokens == replay.result.prefixHitTokens - before.prefixHitTokens, "request \(i)")
                #expect(served.chunkHitTokens == replay.result.chunkHitTokens - before.chunkHitTokens, "request \(i)")
                #expect(served.recomputedTokens == replay.result.recomputedTokens - before.recomputedTokens, "request \(i)")
            }
            try cache.validate()
            #expect(cache.evictedNodes == 0)
        }
    }

    /// The naive LRU model: cached paths (segment identities from the root) with their last use; with a
    /// host tier, the chunks spilled there as a list, least recently used first.
    struct NaiveLRU {
        let capacity: Int, blockTokens: Int, chunkReuse: Bool, ratio: Double
        var hostCapacity = 0
        var host: [(identity: UInt64, blocks: Int)] = []
        var lastUse: [[UInt64]: UInt64] = [:]
        var tokens: [[UInt64]: Int] = [:]
        var tick: UInt64 = 0
        var used = 0

        func blocks(_ path: [UInt64]) -> Int { (tokens[path]! + blockTokens - 1) / blockTokens }

        mutating func serve(_ p: [RAGPulse.Segment]) -> ChunkPrefixCache.Served {
            var served = ChunkPrefixCache.Served()
            var pinned = Set<[UInt64]>()
            var path: [UInt64] = []
            var k = 0
            while k < p.count, lastUse[path + [p[k].identity]] != nil {
                path.append(p[k].identity)
                tick += 1; lastUse[path] = tick; pinned.insert(path)
                served.prefixHitTokens += p[k].tokens
                k += 1
            }
            if chunkReuse {
                for s in p[k...] {
                    // The most recently used cached node of this identity.
                    guard let holder = lastUse.filter({ $0.key.last == s.identity }).max(by: { $0.value < $1.value })?.key else {
                        if let i = host.firstIndex(where: { $0.identity == s.identity }) {
                            served.chunkHitTokens += s.tokens
                            served.hostHitTokens += s.tokens
                            served.recomputedTokens += Int((ratio * Double(s.tokens)).rounded(.up))
                            host.append(host.remove(at: i))
                        }
                        continue
                    }
                    served.chunkHitTokens += s.tokens
                    served.recomputedTokens += Int((ratio * Double(s.tokens)).rounded(.up))
                    tick += 1; lastUse[holder] = tick; pinned.insert(holder)
                }
            }
            while k < p.count {
                let next = path + [p[k].identity]
                tokens[next] = p[k].tokens
                let need = blocks(next)
                guard need <= capacity else { break }
                var full = false
                while used + need > capacity {
                    let leaves = lastUse.keys.filter { n in !pinned.contains(n) && !lastUse.keys.contains { $0.count == n.count + 1 && Array($0.dropLast()) == n } }
                    guard let victim = leaves.min(by: { lastUse[$0]! < lastUse[$1]! }) else { full = true; break }
                    used -= blocks(victim)
                    lastUse[victim] = nil
                    if chunkReuse, hostCapacity > 0, !lastUse.keys.contains(where: { $0.last == victim.last }), blocks(victim) <= hostCapacity {
                        if let i = host.firstIndex(where: { $0.identity == victim.last! }) {
                            host.append(host.remove(at: i))
                        } else {
                            while host.reduce(0, { $0 + $1.blocks }) + blocks(victim) > hostCapacity { host.removeFirst() }
                            host.append((victim.last!, blocks(victim)))
                        }
                    }
                }
                if full { break }
                used += need
                path = next
                tick += 1; lastUse[path] = tick; pinned.insert(path)
                k += 1
            }
            return served
        }
    }

    @Test(arguments: [(4, false), (4, true), (9, true), (30, true)] as [(UInt64, Bool)])
    func boundedLRUEqualsTheNaiveModel(seed: UInt64, chunkReuse: Bool) throws {
        let capacity = 10 + Int(seed) * 3
        var cache = try ChunkPrefixCache(.init(capacityBlocks: capacity, blockTokens: 4, policy: .lru, chunkReuse: chunkReuse,
                                               recomputeRatio: 0.3, cost: Self.linear))
        var model = NaiveLRU(capacity: capacity, blockTokens: 4, chunkReuse: chunkReuse, ratio: 0.3)
        for (i, p) in Self.prompts(seed: seed, count: 150).enumerated() {
            let served = cache.serve(Self.steps(p))
            #expect(served == model.serve(p), "request \(i)")
            #expect(cache.usedBlocks == model.used, "request \(i)")
            try cache.validate()
        }
        #expect(cache.evictedNodes > 0)
    }

    /// Chunks evicted from the pool spill to a host tier and come back as host hits, as the naive model
    /// says; a host of 0 blocks is no host.
    @Test(arguments: [(4, 6), (9, 8), (30, 12), (31, 3)] as [(UInt64, Int)])
    func aHostTierEqualsTheNaiveModel(seed: UInt64, hostBlocks: Int) throws {
        let capacity = 10 + Int(seed) * 3
        var cache = try ChunkPrefixCache(.init(capacityBlocks: capacity, blockTokens: 4, policy: .lru, chunkReuse: true,
                                               recomputeRatio: 0.3, cost: Self.linear, hostBlocks: hostBlocks))
        var model = NaiveLRU(capacity: capacity, blockTokens: 4, chunkReuse: true, ratio: 0.3, hostCapacity: hostBlocks)
        var fromHost = 0
        for (i, p) in Self.prompts(seed: seed, count: 150).enumerated() {
            let served = cache.serve(Self.steps(p))
            #expect(served == model.serve(p), "request \(i)")
            #expect(cache.hostUsedBlocks == model.host.reduce(0) { $0 + $1.blocks }, "request \(i)")
            fromHost += served.hostHitTokens
            try cache.validate()
        }
        #expect(fromHost > 0 && cache.hostSpills > 0)
    }

    @Test(arguments: [5, 6] as [UInt64])
    func pgdsfKeepsEveryInvariant(seed: UInt64) throws {
        var cache = try ChunkPrefixCache(.init(capacityBlocks: 25, blockTokens: 4, policy: .pgdsf, chunkReuse: true,
                                               recomputeRatio: 0.15, cost: Self.linear))
        var hits = 0
        for p in Self.prompts(seed: seed, count: 200) {
            let s = cache.serve(Self.steps(p))
            hits += s.prefixHitTokens + s.chunkHitTokens
            try cache.validate()
            #expect(cache.usedBlocks <= 25)
        }
        #expect(hits > 0 && cache.evictedNodes > 0)
    }

    @Test func refusesBadConfigurations() {
        for (capacity, blockTokens, ratio, host) in [(-1, 4, 0.1, 0), (10, 0, 0.1, 0), (10, 4, 1.5, 0), (10, 4, Double.nan, 0), (10, 4, 0.1, -1)] {
            #expect(throws: CacheModelError.self) {
                _ = try ChunkPrefixCache(.init(capacityBlocks: capacity, blockTokens: blockTokens, policy: .lru, chunkReuse: true,
                                               recomputeRatio: ratio, cost: Self.linear, hostBlocks: host))
            }
        }
    }

    @Test func replayModelsPrefillAndQueueing() throws {
        let t = try KnowledgeTreeReplayTests.trace()
        let unbounded = ChunkReuseReplay.run(t, recomputeRatio: 0.15)
        let cost = try RecomputeCost(secondsPerToken: 0.01, secondsPerContextPair: 0)
        for chunkReuse in [false, true] {
            let r = try ChunkPrefixReplay.run(t, config: .init(capacityBlocks: 1 << 20, blockTokens: 16, policy: .pgdsf,
                                                                chunkReuse: chunkReuse, recomputeRatio: 0.15, cost: cost), validateEvery: 1)
            #expect(r.prefixHitTokens == unbounded.prefixHitTokens)
            #expect(r.chunkHitTokens == (chunkReuse ? unbounded.chunkHitTokens : 0))
            // Linear cost: prefill seconds are 0.01 per computed token; the queue never makes TTFT shorter.
            #expect(abs(r.prefillSeconds - 0.01 * Double(r.computedTokens)) < 1e-9)
            #expect(r.computedTokens == r.inputTokens - r.reusedTokens + r.recomputedTokens)
            #expect(r.ttft.count == 4 && r.ttft.allSatisfy { $0 >= 0 } && r.ttftQuantile(1) >= r.meanTTFT)
        }
    }
}
