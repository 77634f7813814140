import CKVCache
import KVCache
import Testing

/// The eviction policies of `enum kvcache_eviction_policy` through the C ABI: each one opens, serves and
/// keeps its invariants, and the admission policies keep a returning prefix that LRU gives up.
struct PolicyCABITests {
    static func code(_ c: kvcache_eviction_policy) -> Int32 { Int32(truncatingIfNeeded: c.rawValue) }

    /// One request through the C calls: add, lookup, allocate what is not cached, commit, free.
    /// Returns the prefix blocks the lookup found.
    static func serve(_ c: CCache, _ id: Int64, _ prompt: [UInt32]) throws -> Int64 {
        #expect(c.add(id, prompt) == 0)
        let (s, hit) = c.lookup(id)
        #expect(s == 0)
        let (a, _) = c.allocate(id, Int64(prompt.count) - hit.cached_tokens)
        #expect(a == 0)
        #expect(c.commit(id, Int64(prompt.count) - hit.cached_tokens) == 0)
        #expect(c.free(id) == 0)
        #expect(c.validate() == 0)
        return hit.cached_blocks
    }

    /// A prefix used twice, then a one-shot prefix used once after it, then a request that evicts one
    /// of the two: LRU evicts the older (the returning prefix), the admission policies the one-shot.
    @Test(arguments: [(KVCACHE_EVICTION_LRU, false), (KVCACHE_EVICTION_PROBATION, true),
                      (KVCACHE_EVICTION_PGDSF_PROBATION, true), (KVCACHE_EVICTION_PGDSF, true)])
    func returningPrefixOutlivesAOneShotOne(policy: kvcache_eviction_policy, keepsReturning: Bool) throws {
        let c = try CCache(blockTokens: 4, capacity: 4, policy: Self.code(policy))
        let a: [UInt32] = [1, 2, 3, 4, 5], b: [UInt32] = [11, 12, 13, 14, 15]
        #expect(try Self.serve(c, 1, a) == 0)
        #expect(try Self.serve(c, 2, a) == 1)
        #expect(try Self.serve(c, 3, b) == 0)
        #expect(try Self.serve(c, 4, Array(20 ..< 29)) == 0)  // 3 blocks: the 2 free ones and one eviction
        var stats = kvcache_stats()
        #expect(kvcache_get_stats(c.handle, &stats) == 0 && stats.evicted_blocks == 1)
        #expect(try Self.serve(c, 5, a) == (keepsReturning ? 1 : 0), "\(policy)")
    }

    /// Every value of the enum opens a cache that serves a random workload with its invariants intact;
    /// one past the last is refused.
    @Test func everyPolicyValueOpensAndServes() throws {
        let all = [KVCACHE_EVICTION_LRU, KVCACHE_EVICTION_FIFO, KVCACHE_EVICTION_LFU, KVCACHE_EVICTION_PGDSF,
                   KVCACHE_EVICTION_PROBATION, KVCACHE_EVICTION_PGDSF_PROBATION, KVCACHE_EVICTION_MARKING]
        #expect(all.map { Self.code($0) } == Array(0 ..< 7))
        #expect(EvictionPolicyKind.allCases.count == all.count)
        for policy in all {
            let c = try CCache(blockTokens: 4, capacity: 16, policy: Self.code(policy))
            var rng = SplitMix64(seed: UInt64(policy.rawValue) + 1)
            for id in 1 ... 200 as ClosedRange<Int64> {
                let prefix = UInt32(rng.next() % 6) * 100
                let prompt = (0 ..< 4 + Int(rng.next() % 12)).map { prefix + UInt32($0) }
                _ = try Self.serve(c, id, prompt)
            }
            var stats = kvcache_stats()
            #expect(kvcache_get_stats(c.handle, &stats) == 0)
            #expect(stats.evicted_blocks > 0 && stats.hit_tokens > 0, "\(policy)")
        }
        #expect(throws: CStatus.self) { try CCache(capacity: 4, policy: 7) }
    }
}
