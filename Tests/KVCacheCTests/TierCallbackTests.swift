#if canImport(Glibc)
import Glibc
#endif
import CKVCache
import KVCache
import Testing

/// The engine's side of the tier calls: copies handed out through the callbacks with tokens, performed
/// by "the engine" (a byte array standing for GPU memory) and reported with kvcache_tiers_copy_done,
/// at once inside the callback or later from the test thread, successfully or not.
struct TierCallbackTests {
    static let blockBytes = 2 * 2 * 1 * 8 * 2 * 4   // layers x (K, V) x kv_heads x head_dim x dtype x tokens

    /// The engine: its device memory and the copies it has been asked for and not reported.
    final class Engine: @unchecked Sendable {
        // Sendable: `memory` is written by one copy at a time (the tiers pin what a copy touches).
        let memory: UnsafeMutableRawPointer
        let deferred = Locked<[(token: UInt64, block: Int32, offset: Int, apply: @Sendable () -> Void)]>([])
        /// Report inside the callback (true) or leave it to `drain`.
        let immediate: Bool
        let handle = Locked<UInt>(0)   // the kvcache_tiers_t address, set after create

        init(blocks: Int, immediate: Bool) {
            memory = .allocate(byteCount: blocks * TierCallbackTests.blockBytes, alignment: 64)
            memory.initializeMemory(as: UInt8.self, repeating: 0, count: blocks * TierCallbackTests.blockBytes)
            self.immediate = immediate
        }

        deinit { memory.deallocate() }

        var tiers: OpaquePointer { OpaquePointer(bitPattern: handle.withLock { $0 })! }

        func copy(toHost: Bool, block: Int32, offset: Int, length: Int, host: UnsafeMutableRawPointer, token: UInt64) {
            let device = memory + Int(block) * TierCallbackTests.blockBytes + offset
            let hostAddress = UInt(bitPattern: host), deviceAddress = UInt(bitPattern: device)
            let apply: @Sendable () -> Void = {
                let h = UnsafeMutableRawPointer(bitPattern: hostAddress)!, d = UnsafeMutableRawPointer(bitPattern: deviceAddress)!
                if toHost { h.copyMemory(from: d, byteCount: length) } else { d.copyMemory(from: h, byteCount: length) }
            }
            if immediate {
                apply()
                #expect(kvcache_tiers_copy_done(tiers, token, true) == 0)
            } else {
                deferred.withLock { $0.append((token, block, offset, apply)) }
            }
        }

        /// Performs and reports every deferred copy; `fail` picks copies (by device block and byte offset)
        /// reported as failed (not copied).
        func drain(fail: (_ block: Int32, _ offset: Int) -> Bool = { _, _ in false }) -> Int {
            let list = deferred.withLock { l in
                let all = l
                l.removeAll()
                return all
            }
            for (token, block, offset, apply) in list {
                let bad = fail(block, offset)
                if !bad { apply() }
                #expect(kvcache_tiers_copy_done(tiers, token, !bad) == 0)
                #expect(kvcache_tiers_copy_done(tiers, token, true) == KVCACHE_ERR_INVALID_ARGUMENT.code)  // once only
            }
            return list.count
        }

        func block(_ b: Int32) -> UnsafeMutableRawBufferPointer {
            UnsafeMutableRawBufferPointer(start: memory + Int(b) * TierCallbackTests.blockBytes, count: TierCallbackTests.blockBytes)
        }
    }

    static let copyOut: kvcache_tier_copy_fn = { ctx, block, offset, length, host, token in
        Unmanaged<Engine>.fromOpaque(ctx!).takeUnretainedValue()
            .copy(toHost: true, block: block, offset: offset, length: length, host: host!, token: token)
    }
    static let copyIn: kvcache_tier_copy_fn = { ctx, block, offset, length, host, token in
        Unmanaged<Engine>.fromOpaque(ctx!).takeUnretainedValue()
            .copy(toHost: false, block: block, offset: offset, length: length, host: host!, token: token)
    }

    static func open(_ engine: Engine, hostBlocks: Int) throws -> OpaquePointer {
        var config = kvcache_tiers_config()
        #expect(kvcache_tiers_config_init(&config) == 0)
        config.layers = 2; config.kv_heads = 1; config.head_dim = 8; config.dtype_bytes = 2; config.block_tokens = 4
        config.device_blocks = 8
        config.host_blocks = Int64(hostBlocks)
        config.layer_groups = 2
        config.device_to_host = copyOut
        config.host_to_device = copyIn
        config.copy_context = Unmanaged.passUnretained(engine).toOpaque()
        var out: OpaquePointer?
        let status = kvcache_tiers_create_checked(UInt32(KVCACHE_ABI_VERSION), MemoryLayout<kvcache_tiers_config>.size,
                                                  &config, &out)
        guard status == 0, let out else { throw CStatus(status) }
        engine.handle.withLock { $0 = UInt(bitPattern: out) }
        return out
    }

    static func keys(_ n: Int, salt: UInt64) -> [kvcache_key] { (0 ..< n).map { kvcache_key(lo: UInt64($0 + 1), hi: salt) } }

    @Test(arguments: [true, false])
    func storeAndLoadThroughTheEngineCopies(immediate: Bool) throws {
        let engine = Engine(blocks: 8, immediate: immediate)
        let tiers = try Self.open(engine, hostBlocks: 4)
        defer { _ = kvcache_tiers_destroy(tiers) }
        var keys = Self.keys(3, salt: 7)
        let src: [Int32] = [5, 1, 6]
        for (i, b) in src.enumerated() { engine.block(b).initializeMemory(as: UInt8.self, repeating: UInt8(10 + i)) }
        var id: UInt64 = 0
        #expect(kvcache_tiers_prepare_store(tiers, src, &keys, 3, nil, &id) == 0)
        if !immediate {
            // Each block is two layer groups: two copies each, none reported yet.
            var complete = true
            #expect(kvcache_tiers_is_complete(tiers, id, &complete) == 0 && !complete)
            var failed = [UInt8](repeating: 9, count: 3)
            var count = 0
            #expect(kvcache_tiers_failed_blocks(tiers, id, &failed, 3, &count) == 0 && failed == [0, 0, 0] && count == 3)
            #expect(kvcache_tiers_failed_blocks(tiers, id, &failed, 2, &count) == KVCACHE_ERR_BUFFER_TOO_SMALL.code)
            var n = 0
            while n < 6 { n += engine.drain() }
        }
        var ok = [UInt8](repeating: 0, count: 3)
        var stored = 0
        #expect(kvcache_tiers_complete_store(tiers, id, &ok, 3, &stored) == 0)
        #expect(ok == [1, 1, 1] && stored == 3)

        // The engine lost those blocks; load them back into others.
        for b in src { engine.block(b).initializeMemory(as: UInt8.self, repeating: 0) }
        var out = kvcache_tier_lookup()
        var locations = [Int32](repeating: 0, count: 3)
        #expect(kvcache_tiers_lookup(tiers, &keys, 3, 0, 3, &locations, 3, &out) == 0)
        #expect(out.host_blocks == 3 && locations == [1, 1, 1])
        let dst: [Int32] = [2, 3, 4]
        #expect(kvcache_tiers_prepare_load(tiers, &keys, 3, 0, dst, 3, &id) == 0)
        if !immediate {
            // One copy of the first and one of the third block fail (the first's second layer group, the
            // third's first), whatever order the copies are handed out in: only the middle block arrives.
            var n = 0
            while n < 6 {
                n += engine.drain { block, offset in
                    (block == dst[0] && offset > 0) || (block == dst[2] && offset == 0)
                }
            }
        }
        var prefix = 0
        #expect(kvcache_tiers_complete_load(tiers, id, &ok, 3, &prefix) == 0)
        if immediate {
            #expect(ok == [1, 1, 1] && prefix == 3)
            for (i, b) in dst.enumerated() { #expect(engine.block(b).allSatisfy { $0 == UInt8(10 + i) }) }
        } else {
            #expect(ok == [0, 1, 0] && prefix == 0)
            #expect(engine.block(dst[1]).allSatisfy { $0 == 11 })
        }
        var st = kvcache_tier_stats()
        #expect(kvcache_tiers_get_stats(tiers, &st) == 0)
        #expect(st.block_bytes == Int64(Self.blockBytes) && st.host.stored_blocks == 3)
        #expect(kvcache_tiers_validate(tiers) == 0)
    }

    @Test func refusedConfigurationsAndNullArguments() throws {
        var config = kvcache_tiers_config()
        #expect(kvcache_tiers_config_init(nil) == KVCACHE_ERR_NULL_POINTER.code)
        #expect(kvcache_tiers_config_init(&config) == 0)
        var out: OpaquePointer? = nil
        let size = MemoryLayout<kvcache_tiers_config>.size
        #expect(kvcache_tiers_create_checked(UInt32(KVCACHE_ABI_VERSION), size, &config, &out) == KVCACHE_ERR_INVALID_ARGUMENT.code)
        config.layers = 2; config.kv_heads = 1; config.head_dim = 8; config.dtype_bytes = 3; config.block_tokens = 4
        config.device_blocks = 4
        #expect(kvcache_tiers_create_checked(UInt32(KVCACHE_ABI_VERSION), size, &config, &out) == KVCACHE_ERR_INVALID_ARGUMENT.code)
        config.dtype_bytes = 2
        config.device_to_host = Self.copyOut   // one callback without the other
        #expect(kvcache_tiers_create_checked(UInt32(KVCACHE_ABI_VERSION), size, &config, &out) == KVCACHE_ERR_INVALID_ARGUMENT.code)
        config.device_to_host = nil
        #expect(kvcache_tiers_create_checked(UInt32(KVCACHE_ABI_VERSION) + 1, size, &config, &out) == KVCACHE_ERR_INVALID_ARGUMENT.code)
        #expect(kvcache_tiers_create_checked(UInt32(KVCACHE_ABI_VERSION), size - 8, &config, &out) == KVCACHE_ERR_INVALID_ARGUMENT.code)
        #expect(out == nil)
        #expect(kvcache_tiers_create_checked(UInt32(KVCACHE_ABI_VERSION), size, &config, &out) == 0)
        let tiers = try #require(out)
        defer { _ = kvcache_tiers_destroy(tiers) }
        var key = kvcache_key(lo: 1, hi: 2)
        var tier: Int32 = 0
        #expect(kvcache_tiers_loadable(nil, key, &tier) == KVCACHE_ERR_NULL_HANDLE.code)
        #expect(kvcache_tiers_loadable(tiers, key, nil) == KVCACHE_ERR_NULL_POINTER.code)
        #expect(kvcache_tiers_loadable(tiers, key, &tier) == 0 && tier == -1)
        var hit = true
        var buffer = [UInt8](repeating: 0, count: Self.blockBytes)
        #expect(kvcache_tiers_disk_get(tiers, key, &buffer, buffer.count, &hit) == KVCACHE_ERR_INVALID_ARGUMENT.code)
        #expect(String(cString: kvcache_last_error()).hasPrefix("kvcache_tiers_disk_get: invalid argument"))
        #expect(kvcache_tiers_lookup(tiers, nil, 3, 0, 3, nil, 0, nil) == KVCACHE_ERR_NULL_POINTER.code)
        var lookup = kvcache_tier_lookup()
        #expect(kvcache_tiers_lookup(tiers, &key, 1, 2, 3, nil, 0, &lookup) == KVCACHE_ERR_INVALID_ARGUMENT.code)
        #expect(kvcache_tiers_lookup(tiers, &key, 1, 0, -1, nil, 0, &lookup) == KVCACHE_ERR_INVALID_ARGUMENT.code)
        #expect(kvcache_tiers_touch(tiers, nil, 2, nil) == KVCACHE_ERR_NULL_POINTER.code)
        #expect(kvcache_tiers_destroy(nil) == KVCACHE_ERR_NULL_HANDLE.code)
        #expect(kvcache_tiers_copy_done(nil, 1, true) == KVCACHE_ERR_NULL_HANDLE.code)
        #expect(String(cString: kvcache_status_name(kvcache_status(KVCACHE_ERR_TIER_SYSTEM.rawValue))) == "KVCACHE_ERR_TIER_SYSTEM")
    }

    @Test func diskBytesRoundTrip() throws {
        let dir = "/tmp/kvtiers-disk-\(getpid())"
        defer { _ = system("rm -rf \(dir)") }
        var config = kvcache_tiers_config()
        #expect(kvcache_tiers_config_init(&config) == 0)
        config.layers = 2; config.kv_heads = 1; config.head_dim = 8; config.dtype_bytes = 2; config.block_tokens = 4
        config.device_blocks = 1
        config.disk_capacity_bytes = 1 << 20
        var out: OpaquePointer?
        let status = dir.withCString { p in
            config.disk_directory = p
            return kvcache_tiers_create_checked(UInt32(KVCACHE_ABI_VERSION), MemoryLayout<kvcache_tiers_config>.size,
                                                &config, &out)
        }
        #expect(status == 0)
        let tiers = try #require(out)
        defer { _ = kvcache_tiers_destroy(tiers) }
        var keys = Self.keys(3, salt: 9)
        let page = (0 ..< Self.blockBytes).map { UInt8(truncatingIfNeeded: $0 * 7) }
        var stored = false
        #expect(kvcache_tiers_disk_put(tiers, keys[0], nil, page, page.count, &stored) == 0 && stored)
        #expect(kvcache_tiers_disk_put(tiers, keys[0], nil, page, page.count, &stored) == 0 && !stored)
        #expect(kvcache_tiers_disk_put(tiers, keys[1], &keys[0], page, page.count - 1, &stored)
                == KVCACHE_ERR_INVALID_ARGUMENT.code)
        var leading = 0
        #expect(kvcache_tiers_disk_contains(tiers, &keys, 3, &leading) == 0 && leading == 1)
        var back = [UInt8](repeating: 0, count: Self.blockBytes)
        var hit = false
        #expect(kvcache_tiers_disk_get(tiers, keys[0], &back, back.count, &hit) == 0 && hit && back == page)
        #expect(kvcache_tiers_disk_get(tiers, keys[2], &back, back.count, &hit) == 0 && !hit)
        var tier: Int32 = 0
        #expect(kvcache_tiers_loadable(tiers, keys[0], &tier) == 0 && tier == 2)
    }
}

/// A value behind a pthread mutex (the test's engine is called from the library's transfer threads).
final class Locked<Value>: @unchecked Sendable {
    // Sendable: `value` is only touched under `mutex`.
    private var mutex = pthread_mutex_t()
    private var value: Value

    init(_ value: Value) {
        self.value = value
        pthread_mutex_init(&mutex, nil)
    }

    deinit { pthread_mutex_destroy(&mutex) }

    func withLock<R>(_ body: (inout Value) -> R) -> R {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return body(&value)
    }
}
