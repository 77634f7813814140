import Testing
@testable import KVCache

/// PGDSF's ordering on hand-built trees, driven through the real `PrefixIndex` (as the manager
/// drives it): publish (held by its writer), release, hit, evict.
struct PGDSFPolicyTests {
    static let tokens = 16
    /// Llama-3-8B on one H100 (RooflineCostModel's figures), written out: the core knows no model.
    static let cost = try! RecomputeCost(secondsPerToken: 2.706e-5, secondsPerContextPair: 1.325e-9)

    /// A prefix index plus the bookkeeping a test needs to drive it like the manager does.
    struct Driver {
        var index: PrefixIndex
        var clock: UInt64 = 0
        var nextBlock: BlockID = 0

        init(_ kind: EvictionPolicyKind, capacity: Int = 64) {
            index = PrefixIndex(capacity: capacity, policy: try! kind.make(capacity: capacity, recomputeCost: PGDSFPolicyTests.cost))
        }

        /// Publishes a chain of `depth` new blocks under `parent` and releases them; returns their ids.
        mutating func publish(under parent: BlockID = PrefixIndex.noParent, depth: Int) -> [BlockID] {
            clock += 1
            var p = parent, out: [BlockID] = []
            for _ in 0 ..< depth {
                let b = nextBlock
                nextBlock += 1
                index.insert(BlockKey(lo: UInt64(b) + 1, hi: 7), block: b, parent: p, tokens: PGDSFPolicyTests.tokens, clock: clock)
                out.append(b)
                p = b
            }
            release(out)
            return out
        }

        /// A prefix hit on `blocks` (root first): pinned, then released by its sequence.
        mutating func hit(_ blocks: [BlockID]) {
            clock += 1
            for b in blocks {
                index.setHeld(b, true)
                index.touch(b, kind: .hit, clock: clock, tokens: PGDSFPolicyTests.tokens)
            }
            clock += 1
            release(blocks)
        }

        mutating func release(_ blocks: [BlockID]) {
            for b in blocks.reversed() {
                index.setHeld(b, false)
                index.touch(b, kind: .release, clock: clock, tokens: PGDSFPolicyTests.tokens)
            }
        }

        mutating func evict() -> BlockID? {
            clock += 1
            let victim = index.evictLeaf(clock: clock, tokens: PGDSFPolicyTests.tokens)?.block
            try? index.validate { _ in false }
            return victim
        }
    }

    @Test func aDeepOftenHitBlockOutlivesAShallowColdOne() {
        for kind in [EvictionPolicyKind.pgdsf, .lru] {
            var d = Driver(kind)
            let deep = d.publish(depth: 3)
            d.hit(deep)
            d.hit(deep)
            let cold = d.publish(depth: 1)
            // LRU evicts the deep chain's leaf (used before the cold block); PGDSF evicts the cold
            // block: it is cheaper to recompute (no context before it) and was never hit.
            #expect(d.evict() == (kind == .pgdsf ? cold[0] : deep[2]), "\(kind)")
        }
    }

    @Test func deeperBlocksCostMoreAtEqualFrequency() throws {
        var d = Driver(.pgdsf)
        let deep = d.publish(depth: 4)
        let shallow = d.publish(depth: 2)
        // Same frequency (1), same inflation clock: the depth-2 leaf is cheaper than the depth-4 one.
        #expect(d.evict() == shallow[1])
        let policy = try #require(d.index.policy as? PGDSFPolicy)
        #expect(d.index.priority(of: deep[3]) > d.index.priority(of: shallow[0]))
        #expect(policy.frequency(of: deep[3]) == 1)
    }

    @Test func frequencyBeatsRecencyAtEqualDepth() throws {
        var d = Driver(.pgdsf)
        let hot = d.publish(depth: 1)
        d.hit(hot)
        let cold = d.publish(depth: 1)
        let policy = try #require(d.index.policy as? PGDSFPolicy)
        #expect(policy.frequency(of: hot[0]) == 2 && policy.frequency(of: cold[0]) == 1)
        #expect(d.evict() == cold[0])
    }

    @Test func inflationLetsAOnceHotBlockAgeOut() throws {
        var d = Driver(.pgdsf)
        let hot = d.publish(depth: 1)
        for _ in 0 ..< 5 { d.hit(hot) }                 // frequency 6: priority 6c at L = 0
        let policy = try #require(d.index.policy as? PGDSFPolicy)
        var evictedAt: Int?
        var lastInflation = policy.inflation
        // A stream of one-off blocks, one slot: each is evicted at L + c, lifting L by c.
        for step in 1 ... 10 {
            _ = d.publish(depth: 1)
            let victim = d.evict()
            #expect(policy.inflation >= lastInflation)
            lastInflation = policy.inflation
            if victim == hot[0] { evictedAt = step; break }
        }
        let step = try #require(evictedAt, "the once-hot block never aged out")
        #expect((6 ... 8).contains(step), "aged out after \(step) evictions")
    }

    @Test func theClockBecomesTheEvictedPriority() throws {
        var d = Driver(.pgdsf)
        let hot = d.publish(depth: 1)
        for _ in 0 ..< 2 { d.hit(hot) }
        let before = d.index.priority(of: hot[0])
        while d.evict() != hot[0] { _ = d.publish(depth: 1) }
        let policy = try #require(d.index.policy as? PGDSFPolicy)
        #expect(policy.inflation == before)
    }

    @Test func resetForgetsClockAndFrequencies() throws {
        var d = Driver(.pgdsf)
        let a = d.publish(depth: 2)
        d.hit(a)
        _ = d.evict()
        let policy = try #require(d.index.policy as? PGDSFPolicy)
        #expect(policy.inflation > 0)
        d.index.removeAll { _ in }
        #expect(policy.inflation == 0 && policy.frequency(of: a[0]) == 0)
    }

    @Test func blockIdsPastTheCapacityGrowTheTable() {
        let p = PGDSFPolicy(capacity: 2, cost: Self.cost)
        let node = PolicyNode(block: 40, depth: 2, key: BlockKey(lo: 1, hi: 1), tokens: 16, clock: 1)
        let first = p.priorityOnInsert(node)
        // Frequency x cost, plus the tie-breaking recency term of clock 1.
        #expect(first == p.recomputeSeconds(node) + p.recency(node))
        #expect(p.priorityOnAccess(node, previous: first, kind: .hit) == 2 * p.recomputeSeconds(node) + p.recency(node))
        #expect(p.priorityOnAccess(node, previous: first, kind: .release) == 2 * p.recomputeSeconds(node) + p.recency(node))
        #expect(p.frequency(of: 40) == 2 && p.frequency(of: 41) == 0)
    }

    @Test func recomputeCostIsAdditiveOverBlocksAndRejectsBadValues() throws {
        let c = Self.cost
        var sum = 0.0
        for i in 0 ..< 10 { sum += c.seconds(tokens: 16, contextBefore: 16 * i) }
        #expect(abs(sum - c.prefixSeconds(tokens: 160)) <= 1e-12 * sum)
        #expect(c.seconds(tokens: 16, contextBefore: 1000) > c.seconds(tokens: 16, contextBefore: 0))
        #expect(c.prefixSeconds(tokens: 0) == 0)
        #expect(throws: KVCacheError.self) { try RecomputeCost(secondsPerToken: -1, secondsPerContextPair: 0) }
        #expect(throws: KVCacheError.self) { try RecomputeCost(secondsPerToken: 0, secondsPerContextPair: .nan) }
        #expect(throws: KVCacheError.self) { try RecomputeCost(secondsPerToken: .infinity, secondsPerContextPair: 0) }
        let zero = try RecomputeCost(secondsPerToken: 0, secondsPerContextPair: 0)
        #expect(zero.prefixSeconds(tokens: 100) == 0)
    }

    @Test func theManagerPassesItsRecomputeCostToThePolicy() throws {
        let cost = try RecomputeCost(secondsPerToken: 1, secondsPerContextPair: 0)
        let m = try KVCacheManager(KVCacheConfig(blockTokens: 4, capacityBlocks: 8, policy: .pgdsf, recomputeCost: cost))
        try Self.serveNineTokens(m)
        // 1 s per token, no attention term: each 4-token block is worth 4 s at frequency 1 (plus a
        // recency term far below a second).
        let policy = try #require(m.index.policy as? PGDSFPolicy)
        #expect(policy.cost == cost)
        for b in 0 ..< 8 where m.index.isCached(BlockID(b)) { #expect(abs(m.index.priority(of: BlockID(b)) - 4) < 1e-6) }
    }

    @Test func equalPricesGoLeastRecentlyUsedFirst() {
        // Flat cost and equal frequency: the clock L does not move between these publications, so
        // only the recency term orders them; the block used first goes first, whatever its id.
        var d = Driver(.pgdsf)
        let older = d.publish(depth: 1)
        let newer = d.publish(depth: 1)
        d.hit(newer)
        d.hit(older)  // older (the lower block id) is now the more recently used (both at frequency 2)
        #expect(older[0] < newer[0])
        #expect(d.evict() == newer[0])
    }

    /// One 9-token prompt through the manager's whole cycle (add, lookup, allocate, commit, free):
    /// two full 4-token blocks end up cached.
    static func serveNineTokens(_ m: KVCacheManager) throws {
        try m.addSequence(SequenceID(1), prompt: Array(0 ..< 9))
        _ = try m.lookup(SequenceID(1))
        _ = try m.allocate(SequenceID(1), newTokens: 9)
        try m.commit(SequenceID(1), computedTokens: 9)
        try m.free(SequenceID(1))
        try m.validate()
        #expect(m.stats.cachedBlocks == 2)
    }
}
