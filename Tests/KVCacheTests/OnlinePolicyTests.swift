import Testing
@testable import KVCache

/// The probation, pgdsf-probation and predictive marking policies, and the pieces they share
/// (frequency sketch, reuse predictor), on hand-built trees whose right victim is known, driven
/// through the real `PrefixIndex` in the manager's order: publish (held by its writer), release,
/// hit, evict.
struct OnlinePolicyTests {
    static let cost = PGDSFPolicyTests.cost

    /// A prefix index whose blocks carry keys the test names, so a key can come back after eviction.
    struct Driver {
        var index: PrefixIndex
        var clock: UInt64 = 0
        var free: [BlockID]

        init(_ policy: any EvictionPolicy, capacity: Int = 32) {
            index = PrefixIndex(capacity: capacity, policy: policy)
            free = (0 ..< capacity).reversed().map { BlockID($0) }
        }

        static func key(_ n: Int) -> BlockKey { BlockKey(lo: UInt64(n) &* 0x9E37_79B9_7F4A_7C15 | 1, hi: UInt64(n)) }

        /// Serves one request whose chain is `keys`: the cached prefix is hit, the rest published,
        /// then the chain is released deepest first. Returns the chain's blocks.
        @discardableResult
        mutating func serve(_ keys: [Int]) -> [BlockID] {
            var chain: [BlockID] = []
            clock += 1
            for k in keys {
                guard let b = index.block(for: Self.key(k)) else { break }
                index.setHeld(b, true)
                index.touch(b, kind: .hit, clock: clock, tokens: 16)
                chain.append(b)
            }
            clock += 1
            for k in keys.dropFirst(chain.count) {
                let b = free.removeLast()
                index.insert(Self.key(k), block: b, parent: chain.last ?? PrefixIndex.noParent, tokens: 16, clock: clock)
                chain.append(b)
            }
            clock += 1
            for b in chain.reversed() {
                index.touch(b, kind: .release, clock: clock, tokens: 16)
                index.setHeld(b, false)
            }
            return chain
        }

        /// Evicts one leaf and returns its key's number.
        mutating func evict() throws -> Int? {
            clock += 1
            guard let (b, key, _) = index.evictLeaf(clock: clock, tokens: 16) else { return nil }
            free.append(b)
            try index.validate { _ in false }
            return Int(key.hi)
        }
    }

    @Test func probationEvictsAFirstUseBeforeAReturningKey() throws {
        for name in ["probation", "lru"] {
            var d = Driver(name == "lru" ? LRUPolicy() : ProbationPolicy(capacity: 32))
            d.serve([1])
            d.serve([1])  // key 1 used twice: protected
            d.serve([2])  // used once, and after key 1
            // LRU evicts the older block; probation the block on its first use.
            #expect(try d.evict() == (name == "lru" ? 1 : 2), "\(name)")
        }
    }

    @Test func probationRemembersEvictedKeys() throws {
        var d = Driver(ProbationPolicy(capacity: 32))
        d.serve([1])
        #expect(try d.evict() == 1)
        d.serve([1])  // back after its eviction: the sketch remembers it, so it is protected
        d.serve([2])
        d.serve([3])
        #expect(try d.evict() == 2)
        #expect(try d.evict() == 3)
        #expect(try d.evict() == 1)
    }

    @Test func probationProtectionAgesOut() throws {
        let capacity = 4
        var d = Driver(ProbationPolicy(capacity: capacity, protection: 1.1), capacity: 16)
        d.serve([1]); d.serve([1])  // protected for capacity x protection = 4.4 more publications
        for k in 2 ... 5 {
            d.serve([k])
            #expect(try d.evict() == k, "publication \(k - 1): still protected")
        }
        d.serve([6])  // 5 publications past its last use: a probationary block now ranks above it
        #expect(try d.evict() == 1)
    }

    @Test func probationKeepsTheSharedPrefixAndDropsTheOneShotTail() throws {
        var d = Driver(ProbationPolicy(capacity: 32))
        d.serve([1, 2, 3])
        d.serve([1, 2, 4])  // 1 and 2 return; 4 is a new tail
        d.serve([5])
        // Leaves: 3 (first use), 4 (first use), 5 (first use): least recent first; then 2, 1 (protected).
        #expect(try d.evict() == 3)
        #expect(try d.evict() == 4)
        #expect(try d.evict() == 5)
        #expect(try d.evict() == 2)
        #expect(try d.evict() == 1)
    }

    @Test func pgdsfProbationWeighsAFirstUseLess() throws {
        for weight in [1.0, 0.25] {
            var d = Driver(PGDSFPolicy(capacity: 32, cost: Self.cost, firstUseWeight: weight))
            d.serve([1])
            #expect(try d.evict() == 1)
            d.serve([2])  // first use
            d.serve([1])  // returns: its key is in the sketch
            // Same depth, same frequency 1: plain PGDSF evicts key 2, the less recently used, by the
            // recency term alone; with a first-use weight, key 2 counts 0.25: a whole 3/4 of a price lower.
            let p2 = d.index.priority(of: try #require(d.index.block(for: Driver.key(2))))
            let p1 = d.index.priority(of: try #require(d.index.block(for: Driver.key(1))))
            let price = try #require(d.index.policy as? PGDSFPolicy).cost.seconds(tokens: 16, contextBefore: 0)
            #expect(p2 < p1)
            #expect((p1 - p2 > price / 2) == (weight < 1))
            #expect(try d.evict() == 2)
        }
        #expect(PGDSFPolicy(cost: Self.cost).name == "pgdsf")
        #expect(PGDSFPolicy(cost: Self.cost, firstUseWeight: 0.5).name == "pgdsf-probation")
    }

    @Test func markingEvictsOnlyUnmarkedBlocksWhateverThePredictions() throws {
        for noise in [true, false] {
            var d = Driver(PredictiveMarkingPolicy(capacity: 32, noise: noise, seed: 3))
            d.serve([1]); d.serve([2]); d.serve([3])
            let first = try #require(try d.evict())  // all marked in phase 0: a new phase begins
            let policy = try #require(d.index.policy as? PredictiveMarkingPolicy)
            #expect(policy.phase == 1)
            let survivors = [1, 2, 3].filter { $0 != first }
            d.serve([survivors[0]])  // marked in phase 1
            // The unmarked survivor goes next, whatever its prediction; then the marked one.
            #expect(try d.evict() == survivors[1], "noise \(noise)")
            #expect(try d.evict() == survivors[0], "noise \(noise)")
            #expect(policy.phase == 2)
        }
    }

    @Test func frequencySketchCountsAgesAndResets() {
        var s = FrequencySketch(history: 100)
        let a = BlockKey(lo: 11, hi: 12), b = BlockKey(lo: 13, hi: 14)
        #expect(s.estimate(a) == 0)
        for i in 1 ... 20 { #expect(s.increment(a) == min(i, Int(FrequencySketch.maxCount))) }
        #expect(s.estimate(b) == 0)
        for _ in 0 ..< 80 { s.increment(b) }  // the 100th use halves every counter
        #expect(s.estimate(a) == 7 && s.estimate(b) == 7)
        s.reset()
        #expect(s.estimate(a) == 0)
    }

    @Test func reusePredictorLearnsOnlyFromSettledLabels() {
        var p = ReusePredictor(horizon: 100, slots: 64)
        let fast = ReusePredictor.bucket(uses: 2, role: 1, fromEnd: 3)
        let slow = ReusePredictor.bucket(uses: 1, role: 0, fromEnd: 0)
        #expect(fast != slow && (0 ..< ReusePredictor.buckets).contains(fast) && (0 ..< ReusePredictor.buckets).contains(slow))
        #expect(p.probability(fast) == 0.5)
        p.observe(BlockKey(lo: 1, hi: 1), bucket: fast, now: 0)
        #expect(p.probability(fast) == 0.5)  // no label until the key comes back
        p.observe(BlockKey(lo: 1, hi: 1), bucket: fast, now: 10)  // within the horizon: positive
        #expect(p.probability(fast) == 2.0 / 3)
        p.observe(BlockKey(lo: 2, hi: 2), bucket: slow, now: 0)
        p.observe(BlockKey(lo: 2, hi: 2), bucket: slow, now: 500)  // past the horizon: negative
        #expect(p.probability(slow) == 1.0 / 3)
        // Key 1's second use (at 10) expired unrepeated by then: a negative label for its bucket.
        #expect(p.probability(fast) == 2.0 / 4)
        p.reset()
        #expect(p.probability(fast) == 0.5)
    }

    @Test func aCustomPolicyInstanceDrivesTheManager() throws {
        let policy = ProbationPolicy(capacity: 8)
        let m = try KVCacheManager(KVCacheConfig(blockTokens: 4, capacityBlocks: 8), policy: policy)
        #expect(m.index.policy === policy)
        try PGDSFPolicyTests.serveNineTokens(m)
        #expect(throws: KVCacheError.self) { try KVCacheManager(KVCacheConfig(blockTokens: 0, capacityBlocks: 8), policy: policy) }
    }
}
