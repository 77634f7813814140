import CKVCache
import KVCache
import Testing

/// The extremes of every integer argument through the C header: each call returns a status of the
/// header's enum, a refused one changes nothing and says why in one line, and the cache stays valid.
/// The pinned cases are crashes found by tools/fuzz (the process trapped before).
struct ExtremeArgumentTests {
    static let extremes: [Int64] = [0, 1, -1, 15, 16, 17, Int64(Int32.max), 1 << 32, 1 << 48, (1 << 48) + 1,
                                    1 << 62, .max, .min]

    /// Was a trap: the refusal's message multiplied n_keys by block_tokens and overflowed.
    @Test func absurdKeyCountsAreRefusedBeforeTheKeysAreRead() throws {
        let c = try CCache(blockTokens: 16, capacity: 8)
        var key = kvcache_key(lo: 1, hi: 2)
        for n in [Int(1) << 44 + 1, 1 << 48, 1 << 62, Int.max] {   // far more keys than `key` holds
            #expect(kvcache_add_sequence_keys(c.handle, 1, &key, n, 1 << 48) == KVCACHE_ERR_INVALID_ARGUMENT.code)
            #expect(lastError.hasPrefix("kvcache_add_sequence_keys: "), "\(lastError)")
        }
        // a size_t above PTRDIFF_MAX
        #expect(kvcache_add_sequence_keys(c.handle, 1, &key, Int(bitPattern: UInt(Int.max) + 1), 16)
            == KVCACHE_ERR_INVALID_ARGUMENT.code)
        #expect(c.sequenceCount == 0 && c.validate() == 0)
        #expect(c.addKeys(1, [BlockKey(lo: 1, hi: 2)], promptTokens: 16) == 0)
    }

    @Test func absurdTokenCountsAreRefusedBeforeTheTokensAreRead() throws {
        let c = try CCache(blockTokens: 16, capacity: 8)
        var token: UInt32 = 7
        for n in [Int(1) << 48 + 1, 1 << 62, Int.max] {
            #expect(kvcache_add_sequence(c.handle, 1, &token, n, nil, nil, nil, 0) == KVCACHE_ERR_INVALID_ARGUMENT.code)
        }
        #expect(c.sequenceCount == 0 && c.validate() == 0)
    }

    /// Was an abort: a capacity the flags accept allocated past the address space.
    @Test func capacityBeyondMemoryIsOutOfMemoryNotATrap() {
        var config = kvcache_config()
        #expect(kvcache_config_init(&config) == 0)
        config.capacity_blocks = Int64(Int32.max)
        var out: OpaquePointer? = nil
        let limit = MemoryLimit.usableBytes
        if Int(Int32.max) * Int(KVCACHE_INDEX_BYTES_PER_BLOCK) > limit / 2 {   // 274 GB: every test machine
            #expect(kvcache_create(&config, &out) == KVCACHE_ERR_OUT_OF_MEMORY.code)
            #expect(out == nil)
            #expect(lastError.hasPrefix("kvcache_create: capacity_blocks 2147483647 needs more than half"), "\(lastError)")
            #expect(String(cString: kvcache_status_name(KVCACHE_ERR_OUT_OF_MEMORY.code)) == "KVCACHE_ERR_OUT_OF_MEMORY")
        }
    }

    @Test func memoryLimitChecksOverflowAndTheLimit() {
        #expect(MemoryLimit.usableBytes > 0)
        #expect(MemoryLimit.checkedBytes(count: 1 << 40, bytesEach: 1 << 40) == nil)
        #expect(MemoryLimit.checkedBytes(count: -1, bytesEach: 8) == nil)
        #expect(MemoryLimit.checkedBytes(count: 1024, bytesEach: 8) == 8192)
        #expect(MemoryLimit.checkedBytes(count: MemoryLimit.usableBytes, bytesEach: 1) == nil)
    }

    /// A seeded random walk over every sequence call with extreme counts, ids and multimodal spans.
    @Test(arguments: [UInt64(1), 2, 3])
    func randomExtremeCallsKeepEveryContract(seed: UInt64) throws {
        var rng = SplitMix64(seed: seed)
        let c = try CCache(blockTokens: 4, capacity: 32)
        let ids: [Int64] = [1, 2, 0, -1, .max, .min]
        func pick<T>(_ xs: [T]) -> T { xs[Int(rng.next() % UInt64(xs.count))] }
        for _ in 0 ..< 4000 {
            let id = pick(ids), n = pick(Self.extremes), m = pick(Self.extremes)
            let status: kvcache_status
            switch rng.next() % 9 {
            case 0:
                let tokens = (0 ..< Int(rng.next() % 12)).map { _ in UInt32(truncatingIfNeeded: rng.next()) }
                var items = [kvcache_multimodal_item(hash: kvcache_key(lo: rng.next(), hi: 1), start: n, length: m)]
                status = tokens.withUnsafeBufferPointer { t in
                    kvcache_add_sequence(c.handle, id, t.baseAddress, t.count, nil, nil, &items, Int(rng.next() % 2))
                }
            case 1:
                let keys = (0 ..< Int(rng.next() % 4)).map { _ in kvcache_key(lo: rng.next() | 1, hi: rng.next()) }
                status = keys.withUnsafeBufferPointer { kvcache_add_sequence_keys(c.handle, id, $0.baseAddress, $0.count, n) }
            case 2: status = c.lookup(id).0
            case 3: status = c.allocate(id, n, lookahead: m).0
            case 4: status = c.commit(id, n)
            case 5: status = c.appendCount(id, n)
            case 6: status = c.append(id, [UInt32(truncatingIfNeeded: n)])
            case 7: status = c.fork(id, pick(ids))
            default: status = c.free(id)
            }
            #expect((0 ... 14).contains(status))
            if status != 0 { #expect(!lastError.isEmpty && !lastError.contains("\n")) }
            #expect(c.validate() == 0)
        }
    }
}
