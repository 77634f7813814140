import CKVCache
import KVCacheC
import Testing

/// kvcache_metrics_text: the size query, the too-small buffer that writes nothing, and the text.
@Suite struct MetricsCABITests {
    @Test func sizeQueryThenText() throws {
        var config = kvcache_config()
        #expect(kvcache_config_init(&config) == 0)
        config.block_tokens = 4
        config.capacity_blocks = 8
        var cache: OpaquePointer? = nil
        #expect(kvcache_create(&config, &cache) == 0)
        defer { _ = kvcache_destroy(cache) }
        let tokens: [UInt32] = Array(0 ..< 9)
        #expect(kvcache_add_sequence(cache, 1, tokens, tokens.count, nil, nil, nil, 0) == 0)
        var hit = kvcache_prefix_hit()
        #expect(kvcache_lookup(cache, 1, &hit) == 0)

        var length = 0
        #expect(kvcache_metrics_text(cache, nil, 0, &length) == KVCACHE_ERR_BUFFER_TOO_SMALL.rawValue)
        #expect(length > 0)
        var small = [CChar](repeating: 7, count: length)   // one short: no room for the NUL
        #expect(kvcache_metrics_text(cache, &small, small.count, &length) == KVCACHE_ERR_BUFFER_TOO_SMALL.rawValue)
        #expect(small.allSatisfy { $0 == 7 }, "a too-small buffer is left untouched")
        var buffer = [CChar](repeating: 7, count: length + 1)
        #expect(kvcache_metrics_text(cache, &buffer, buffer.count, &length) == 0)
        #expect(buffer[length] == 0)
        let text = String(cString: buffer)
        #expect(text.utf8.count == length)
        #expect(text.contains("kvcache:prefix_cache_queries 9\n"))
        #expect(text.contains("kvcache:prefix_cache_hits 0\n"))
        #expect(kvcache_metrics_text(nil, &buffer, buffer.count, &length) != 0)
    }
}
