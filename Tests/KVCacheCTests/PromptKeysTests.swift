import CKVCache
import KVCache
import Testing

/// `kvcache_prompt_keys`: the keys a router takes from one cache to ask another what it holds.
@Suite struct PromptKeysTests {
    @Test func keysFromOneCacheMatchWhatAnotherCached() throws {
        let serving = try CCache(blockTokens: 4, capacity: 32, namespace: "m")
        let router = try CCache(blockTokens: 4, capacity: 32, namespace: "m")
        let prompt: [UInt32] = Array(1...14)                       // 3 full blocks + 2 tokens
        #expect(serving.add(1, prompt, salt: "t") == 0)
        #expect(serving.allocate(1, 14).0 == 0)
        #expect(serving.commit(1, 14) == 0)

        #expect(router.add(7, prompt, salt: "t") == 0)
        var length = 0
        #expect(kvcache_prompt_keys(router.handle, 7, nil, 0, &length) == KVCACHE_ERR_BUFFER_TOO_SMALL.code)
        #expect(length == 3)
        var short = [kvcache_key](repeating: kvcache_key(lo: 9, hi: 9), count: 2)
        #expect(kvcache_prompt_keys(router.handle, 7, &short, 2, &length) == KVCACHE_ERR_BUFFER_TOO_SMALL.code)
        #expect(short.allSatisfy { $0.lo == 9 && $0.hi == 9 })     // nothing written
        var keys = [kvcache_key](repeating: kvcache_key(), count: 3)
        #expect(kvcache_prompt_keys(router.handle, 7, &keys, 3, &length) == 0)

        // The serving cache holds all three blocks under those keys; another salt matches nothing.
        var matched = -1
        #expect(kvcache_match_length(serving.handle, keys, keys.count, &matched) == 0)
        #expect(matched == 3)
        #expect(router.add(8, prompt, salt: "other") == 0)
        var other = [kvcache_key](repeating: kvcache_key(), count: 3)
        #expect(kvcache_prompt_keys(router.handle, 8, &other, 3, &length) == 0)
        #expect(kvcache_match_length(serving.handle, other, other.count, &matched) == 0)
        #expect(matched == 0)

        // The same keys as the Swift facade computes.
        let swift = try KVCacheManager(KVCacheConfig(blockTokens: 4, capacityBlocks: 32, namespace: "m"))
        try swift.addSequence(SequenceID(7), prompt: prompt, salt: "t")
        #expect(try swift.promptKeys(SequenceID(7)) == keys.map { BlockKey(lo: $0.lo, hi: $0.hi) })
        #expect(kvcache_prompt_keys(router.handle, 99, &keys, 3, &length) == KVCACHE_ERR_UNKNOWN_SEQUENCE.code)
    }
}
