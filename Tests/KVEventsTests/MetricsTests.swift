import KVCache
import KVEvents
import KVMetrics
import Testing

/// The exposition against the counters it is fed: vLLM's definitions (tokens queried and hit), deltas
/// between cumulative updates, per-tier labels and load histograms.
@Suite struct MetricsTests {
    /// The value of the sample line `name` (with its labels, as written), or nil.
    static func sample(_ text: String, _ name: String) -> Double? {
        for line in text.split(separator: "\n") where line.hasPrefix(name + " ") {
            return Double(line.dropFirst(name.count + 1))
        }
        return nil
    }

    @Test func countersFollowTheCacheWhateverTheUpdateCadence() throws {
        let m = try KVCacheManager(KVCacheConfig(blockTokens: 4, capacityBlocks: 10))
        let everyStep = KVMetrics(), atEnd = KVMetrics()
        var rng = SplitMix64(seed: 7)
        for id in 0 ..< 40 {
            let seq = SequenceID(Int64(id))
            // Three 8-token prefixes and a suffix: hits, and evictions in a 10-block pool.
            let base = 8 * UInt32.random(in: 0 ..< 3, using: &rng)
            let prefix = (0 ..< 8).map { base + UInt32($0) }
            let prompt = prefix + (0 ..< Int.random(in: 1 ... 8, using: &rng)).map { _ in UInt32.random(in: 0 ..< 50, using: &rng) }
            try m.addSequence(seq, prompt: prompt)
            let todo = prompt.count - (try m.lookup(seq)).cachedTokens
            if case .allocated = try m.allocate(seq, newTokens: todo) { try m.commit(seq, computedTokens: todo) }
            everyStep.update(m.stats)
            try m.free(seq)
        }
        everyStep.update(m.stats)
        atEnd.update(m.stats)
        let s = m.stats
        #expect(s.queryTokens > 0 && s.hitTokens > 0 && s.evictedBlocks > 0)
        for text in [everyStep.exposition(), atEnd.exposition()] {
            #expect(Self.sample(text, "kvcache:prefix_cache_queries") == Double(s.queryTokens))
            #expect(Self.sample(text, "kvcache:prefix_cache_hits") == Double(s.hitTokens))
            #expect(Self.sample(text, "kvcache:evicted_blocks") == Double(s.evictedBlocks))
            #expect(Self.sample(text, "kvcache:kv_cache_usage_perc") == s.usage)
        }
    }

    @Test func tierTotalsAndLoadLatencies() {
        let metrics = KVMetrics()
        metrics.update(tier: .host, totals: .init(hits: 3, bytesIn: 100, bytesOut: 40))
        metrics.update(tier: .host, totals: .init(hits: 5, bytesIn: 150, bytesOut: 40))
        metrics.update(tier: .disk, totals: .init(hits: 1, bytesIn: 7, bytesOut: 9))
        metrics.update(tier: .device, totals: .init(hits: 99))   // ignored: the device has its own counters
        let observe = metrics.loadObserver
        observe(.host, 20_000)          // 20 us
        observe(.host, 2_000_000)       // 2 ms
        observe(.disk, 300_000_000)     // 300 ms
        let text = metrics.exposition()
        #expect(Self.sample(text, #"kvcache:tier_hits{tier="host"}"#) == 5)
        #expect(Self.sample(text, #"kvcache:tier_hits{tier="disk"}"#) == 1)
        #expect(Self.sample(text, #"kvcache:tier_bytes_moved{tier="host",direction="in"}"#) == 150)
        #expect(Self.sample(text, #"kvcache:tier_bytes_moved{tier="disk",direction="out"}"#) == 9)
        #expect(!text.contains(#"tier="device""#))
        #expect(Self.sample(text, #"kvcache:tier_load_seconds_count{tier="host"}"#) == 2)
        #expect(Self.sample(text, #"kvcache:tier_load_seconds_bucket{tier="host",le="0.00005"}"#) == 1)
        #expect(Self.sample(text, #"kvcache:tier_load_seconds_bucket{tier="disk",le="0.1"}"#) == 0)
        #expect(Self.sample(text, #"kvcache:tier_load_seconds_bucket{tier="disk",le="0.5"}"#) == 1)
    }
}
