import CKVCache
import Testing

/// A live handle of one kind passed where another kind is expected (kvcache_t, kvcache_tiers_t,
/// kvcache_hybrid_t) is refused with INVALID_ARGUMENT and leaves both handles usable; the fuzz found
/// such calls reading one handle's object as another's.
struct WrongHandleTests {
    @Test func everyKindRefusesTheOthers() throws {
        let cache = try CCache(capacity: 8)
        var tc = kvcache_tiers_config()
        #expect(kvcache_tiers_config_init(&tc) == 0)
        tc.layers = 1; tc.kv_heads = 1; tc.head_dim = 8; tc.dtype_bytes = 2; tc.block_tokens = 4
        tc.device_blocks = 8; tc.host_blocks = 4
        var t: OpaquePointer?
        #expect(kvcache_tiers_create_checked(UInt32(KVCACHE_ABI_VERSION), MemoryLayout<kvcache_tiers_config>.size, &tc, &t) == 0)
        var h: OpaquePointer?
        #expect(kvcache_hybrid_create("hybrid-7b", 1 << 30, false, false, &h) == 0)
        let tiers = try #require(t), hybrid = try #require(h)
        let invalid = KVCACHE_ERR_INVALID_ARGUMENT.code

        var where_ = Int32(0)
        #expect(kvcache_tiers_loadable(cache.handle, kvcache_key(lo: 1, hi: 0), &where_) == invalid)
        #expect(lastError.contains("the handle is of another kind"), "\(lastError)")
        #expect(kvcache_tiers_loadable(hybrid, kvcache_key(lo: 1, hi: 0), &where_) == invalid)
        #expect(kvcache_tiers_copy_done(cache.handle, 1, true) == invalid)
        #expect(kvcache_tiers_validate(hybrid) == invalid)
        var stats = kvcache_stats()
        #expect(kvcache_get_stats(tiers, &stats) == invalid && kvcache_get_stats(hybrid, &stats) == invalid)
        var length = 0
        #expect(kvcache_metrics_text(tiers, nil, 0, &length) == invalid)
        #expect(kvcache_hybrid_validate(cache.handle) == invalid && kvcache_hybrid_validate(tiers) == invalid)
        #expect(kvcache_destroy(tiers) == invalid && kvcache_tiers_destroy(hybrid) == invalid
                && kvcache_hybrid_destroy(cache.handle) == invalid)

        // Each handle still works with its own calls.
        #expect(kvcache_get_stats(cache.handle, &stats) == 0 && stats.capacity_blocks == 8)
        #expect(kvcache_tiers_validate(tiers) == 0 && kvcache_hybrid_validate(hybrid) == 0)
        #expect(kvcache_tiers_destroy(tiers) == 0 && kvcache_hybrid_destroy(hybrid) == 0)
    }
}
