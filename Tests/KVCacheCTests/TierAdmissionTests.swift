#if canImport(Glibc)
import Glibc
#endif
import CKVCache
import KVCache
import KVPlan
import KVRuntime
import KVTiers
import Testing

/// kvcache_tiers_attach / _admit / _record_stored in lock-step with the runtime's own tier leg
/// (`PrefixPlanner` over a `KVCacheManager` and a `KVTierManager` wired as `ServingTiers` wires them):
/// seeded random prompts sharing prefixes, on a pool small enough that requests evict, are refused and
/// come back from host, must give the same device hits, loads, computed tokens, block tables, bytes,
/// counters and events on both sides. The refused calls change nothing on either handle.
struct TierAdmissionTests {
    static let capacity = 12
    static let hostBlocks = 10

    /// Whether `block` holds the bytes the engine wrote for `key` (`TierLockStepTests.bytes`, same geometry).
    static func holds(_ block: UnsafeMutableRawBufferPointer, _ key: BlockKey) -> Bool {
        Array(block) == TierLockStepTests.bytes(of: key)
    }

    /// A tier manager through the C ABI over the library's stand-in device pool.
    static func openTiers(blockTokens: Int64 = 4, deviceBlocks: Int = capacity) throws -> OpaquePointer {
        var config = kvcache_tiers_config()
        #expect(kvcache_tiers_config_init(&config) == 0)
        config.layers = 2; config.kv_heads = 1; config.head_dim = 8; config.dtype_bytes = 2; config.block_tokens = blockTokens
        config.device_blocks = Int64(deviceBlocks)
        config.host_blocks = Int64(hostBlocks)
        config.layer_groups = 2
        config.workers = 1
        config.record_events = true
        config.synchronous_eviction_copies = true
        var out: OpaquePointer?
        let status = kvcache_tiers_create_checked(UInt32(KVCACHE_ABI_VERSION), MemoryLayout<kvcache_tiers_config>.size, &config, &out)
        guard status == 0, let out else { throw CStatus(status) }
        return out
    }

    static func deviceBlock(_ tiers: OpaquePointer, _ b: BlockID) -> UnsafeMutableRawBufferPointer {
        var data: UnsafeMutableRawPointer?
        var length = 0
        #expect(kvcache_tiers_device_block(tiers, b, &data, &length) == 0)
        return UnsafeMutableRawBufferPointer(start: data, count: length)
    }

    static func tierCounters(_ tiers: OpaquePointer) -> [Int64] {
        var st = kvcache_tier_stats()
        #expect(kvcache_tiers_get_stats(tiers, &st) == 0)
        return [st.device, st.host, st.disk].flatMap(TierLockStepTests.Harness.fields)
    }

    final class Harness {
        let c: CCache
        let ct: OpaquePointer
        let s: KVCacheManager
        let sTiers: KVTierManager
        let sMemory: HostDeviceMemory
        let planner: PrefixPlanner
        var rng: SplitMix64
        var live: [Int64] = []
        var nextID: Int64 = 1
        var outcomes = [String: Int]()
        /// The prompt prefixes requests share.
        let topics: [[UInt32]]

        init(seed: UInt64) throws {
            c = try CCache(blockTokens: 4, capacity: TierAdmissionTests.capacity, events: true)
            ct = try TierAdmissionTests.openTiers()
            #expect(kvcache_tiers_attach(c.handle, ct) == 0)
            var config = KVCacheConfig(blockTokens: 4, capacityBlocks: TierAdmissionTests.capacity)
            config.recordEvents = true
            s = try KVCacheManager(config)
            let tc = TierLockStepTests.twinConfig(hostBlocks: TierAdmissionTests.hostBlocks)
            sMemory = try HostDeviceMemory(layout: TierLockStepTests.layout, capacityBlocks: TierAdmissionTests.capacity)
            sTiers = try KVTierManager(config: tc, device: sMemory)
            // The runtime's wiring (ServingTiers): eviction observer and lower-tier events.
            s.evictionObserver = sTiers
            s.lowerTierEvents = [sTiers]
            planner = PrefixPlanner(cache: s, tiers: sTiers)
            rng = SplitMix64(seed: seed)
            topics = (0 ..< 4).map { t in (0 ..< 9 + 4 * t).map { UInt32(1000 * t + $0) } }
        }

        deinit { _ = kvcache_tiers_destroy(ct) }

        func step() throws {
            if !live.isEmpty, live.count >= 4 || Bool.random(using: &rng) {
                let id = live.remove(at: Int.random(in: 0 ..< live.count, using: &rng))
                #expect(c.free(id) == 0)
                try s.free(SequenceID(id))
            } else {
                try admitOne()
            }
            compare()
        }

        func admitOne() throws {
            let id = nextID
            nextID += 1
            let topic = topics[Int.random(in: 0 ..< topics.count, using: &rng)]
            var prompt = Array(topic.prefix(Int.random(in: 1 ... topic.count, using: &rng)))
            prompt += (0 ..< Int.random(in: 0 ... 14, using: &rng)).map { _ in UInt32.random(in: 0 ..< 50, using: &rng) }
            #expect(c.add(id, prompt) == 0)
            try s.addSequence(SequenceID(id), prompt: prompt)
            let keys = try s.promptKeys(SequenceID(id))
            // An engine that computes every prompt token, or (as the replays do) its full blocks only.
            let kv = Bool.random(using: &rng) ? keys.count * 4 : prompt.count
            var out = kvcache_tier_admission(device_tokens: -1, loaded_tokens: -1, compute_tokens: -1, host_blocks: -1,
                                             disk_blocks: -1, failed_blocks: -1)
            let status = kvcache_tiers_admit(c.handle, ct, id, Int64(kv), &out)
            let swift = try planner.admission(SequenceID(id), keys: keys, promptTokens: prompt.count, computeTokens: kv)
            guard case .admitted(let deviceTokens, let load) = swift else {
                outcomes["refused", default: 0] += 1
                #expect(status == KVCACHE_ERR_INSUFFICIENT_BLOCKS.code)
                #expect(out.device_tokens == -1)   // untouched
                #expect(c.free(id) == 0)
                try s.free(SequenceID(id))
                return
            }
            #expect(status == 0)
            outcomes[load.loadedBlocks > 0 ? "loaded" : deviceTokens > 0 ? "device hit" : "computed", default: 0] += 1
            #expect(out.device_tokens == Int64(deviceTokens))
            #expect(out.loaded_tokens == Int64(load.tokens))
            #expect(out.host_blocks == Int64(load.hostBlocks) && out.disk_blocks == Int64(load.diskBlocks))
            #expect(out.failed_blocks == Int64(load.failedBlocks))
            #expect(out.compute_tokens == Int64(kv - deviceTokens - load.tokens))
            let table = try s.blockTable(SequenceID(id))
            #expect(c.blockTable(id) == table)
            #expect(c.computedTokens(id) == Int64(try s.computedTokens(SequenceID(id))))
            // Every block that came from a cache holds its key's bytes, on both sides.
            let first = deviceTokens / 4
            for i in 0 ..< first + load.loadedBlocks {
                #expect(TierAdmissionTests.holds(TierAdmissionTests.deviceBlock(ct, table[i]), keys[i]))
                #expect(sMemory.withBlock(table[i]) { TierAdmissionTests.holds($0, keys[i]) } == true)
            }
            // The engine computes the rest: its full prompt blocks get their key's bytes.
            for i in first + load.loadedBlocks ..< min(keys.count, kv / 4) {
                let bytes = TierLockStepTests.bytes(of: keys[i])
                TierAdmissionTests.deviceBlock(ct, table[i]).copyBytes(from: bytes)
                _ = sMemory.withBlock(table[i]) { $0.copyBytes(from: bytes) }
            }
            #expect(c.commit(id, out.compute_tokens) == 0)
            try s.commit(SequenceID(id), computedTokens: kv - deviceTokens - load.tokens)
            #expect(kvcache_tiers_record_stored(c.handle, ct, id, Int64(first)) == 0)
            try planner.recordStored(SequenceID(id), keys: keys, from: first)
            #expect(c.blockTable(id) == (try s.blockTable(SequenceID(id))))
            live.append(id)
        }

        func compare() {
            #expect(StatsValue(c.stats) == StatsValue(s.stats))
            let st = sTiers.statistics
            #expect(TierAdmissionTests.tierCounters(ct) == [st.device, st.host, st.disk].flatMap(TierLockStepTests.Harness.fields))
            #expect(c.validate() == 0)
            #expect(kvcache_tiers_validate(ct) == 0)
            #expect(throws: Never.self) { try self.s.validate() }
            #expect(throws: Never.self) { try self.sTiers.validate() }
            // The cache's drain carries the tier events after its own, as the Swift manager's does; the
            // tiers' copies finish on a transfer thread, so the tier events of one step compare as a set.
            let fromC = c.drainEvents().map(Self.plain)
            var fromSwift: [KVEvent] = []
            s.drainEvents(into: &fromSwift)
            #expect(fromC.sorted() == fromSwift.map(Self.plain).sorted())
        }

        /// An event as the C ABI carries it (no token ids).
        static func plain(_ e: KVEvent) -> String {
            switch e {
            case .blockStored(let keys, let parent, let blockTokens, let tier, _): "stored \(keys) \(String(describing: parent)) \(blockTokens) \(tier)"
            case .blockRemoved(let keys, let tier): "removed \(keys) \(tier)"
            case .allBlocksCleared: "cleared"
            }
        }
    }

    @Test(arguments: [1, 2, 3, 4] as [UInt64])
    func admissionsAgreeWithThePrefixPlanner(seed: UInt64) throws {
        let h = try Harness(seed: seed)
        for _ in 0 ..< 250 { try h.step() }
        // Requests hit the device, came back from host, were computed and were refused.
        #expect(h.outcomes.count == 4, "\(h.outcomes)")
        #expect(h.sTiers.statistics.host.loadedBlocks > 0)
    }

    @Test func refusedCallsChangeNothing() throws {
        let c = try CCache(blockTokens: 4, capacity: Self.capacity)
        let tiers = try Self.openTiers()
        defer { _ = kvcache_tiers_destroy(tiers) }
        let other = try Self.openTiers()
        defer { _ = kvcache_tiers_destroy(other) }
        let prompt: [UInt32] = Array(0 ..< 10)
        var out = kvcache_tier_admission()
        // Nothing attached yet.
        #expect(c.add(1, prompt) == 0)
        #expect(kvcache_tiers_admit(c.handle, tiers, 1, 10, &out) == KVCACHE_ERR_INVALID_ARGUMENT.code)
        #expect(kvcache_tiers_record_stored(c.handle, tiers, 1, 0) == KVCACHE_ERR_INVALID_ARGUMENT.code)
        #expect(kvcache_tiers_detach(c.handle) == KVCACHE_ERR_INVALID_ARGUMENT.code)
        #expect(kvcache_tiers_attach(c.handle, tiers) == 0)
        let before = c.snapshot([1])
        let tiersBefore = Self.tierCounters(tiers)
        // Attached twice, or the other tiers on top, or these tiers to a second cache: refused.
        #expect(kvcache_tiers_attach(c.handle, tiers) == KVCACHE_ERR_INVALID_ARGUMENT.code)
        #expect(kvcache_tiers_attach(c.handle, other) == KVCACHE_ERR_INVALID_ARGUMENT.code)
        let second = try CCache(blockTokens: 4, capacity: Self.capacity)
        #expect(kvcache_tiers_attach(second.handle, tiers) == KVCACHE_ERR_INVALID_ARGUMENT.code)
        // Another block size, or a device pool that does not cover the cache's blocks.
        let wide = try Self.openTiers(blockTokens: 8)
        defer { _ = kvcache_tiers_destroy(wide) }
        let short = try Self.openTiers(deviceBlocks: Self.capacity - 1)
        defer { _ = kvcache_tiers_destroy(short) }
        #expect(kvcache_tiers_attach(second.handle, wide) == KVCACHE_ERR_INVALID_ARGUMENT.code)
        #expect(kvcache_tiers_attach(second.handle, short) == KVCACHE_ERR_INVALID_ARGUMENT.code)
        // Handles of the wrong kind, NULL ones.
        #expect(kvcache_tiers_attach(second.handle, second.handle) == KVCACHE_ERR_INVALID_ARGUMENT.code)
        #expect(kvcache_tiers_attach(tiers, tiers) == KVCACHE_ERR_INVALID_ARGUMENT.code)
        #expect(kvcache_tiers_attach(nil, tiers) == KVCACHE_ERR_NULL_HANDLE.code)
        #expect(kvcache_tiers_attach(second.handle, nil) == KVCACHE_ERR_NULL_HANDLE.code)
        #expect(kvcache_tiers_admit(c.handle, c.handle, 1, 10, &out) == KVCACHE_ERR_INVALID_ARGUMENT.code)
        #expect(kvcache_tiers_admit(c.handle, nil, 1, 10, &out) == KVCACHE_ERR_NULL_HANDLE.code)
        #expect(kvcache_tiers_detach(nil) == KVCACHE_ERR_NULL_HANDLE.code)
        // The admission's own checks: not the attached tiers, no out, unknown sequence, kv_tokens out of range.
        #expect(kvcache_tiers_admit(c.handle, other, 1, 10, &out) == KVCACHE_ERR_INVALID_ARGUMENT.code)
        #expect(kvcache_tiers_admit(c.handle, tiers, 1, 10, nil) == KVCACHE_ERR_NULL_POINTER.code)
        #expect(kvcache_tiers_admit(c.handle, tiers, 99, 10, &out) == KVCACHE_ERR_UNKNOWN_SEQUENCE.code)
        #expect(kvcache_tiers_admit(c.handle, tiers, 1, 11, &out) == KVCACHE_ERR_INVALID_ARGUMENT.code)
        #expect(kvcache_tiers_admit(c.handle, tiers, 1, 7, &out) == KVCACHE_ERR_INVALID_ARGUMENT.code)  // below 2 blocks
        #expect(kvcache_tiers_admit(c.handle, tiers, 1, -1, &out) == KVCACHE_ERR_INVALID_ARGUMENT.code)
        #expect(kvcache_tiers_record_stored(c.handle, tiers, 1, -1) == KVCACHE_ERR_INVALID_ARGUMENT.code)
        #expect(kvcache_tiers_record_stored(c.handle, tiers, 99, 0) == KVCACHE_ERR_UNKNOWN_SEQUENCE.code)
        #expect(kvcache_tiers_record_stored(c.handle, other, 1, 0) == KVCACHE_ERR_INVALID_ARGUMENT.code)
        #expect(c.snapshot([1]) == before)
        #expect(Self.tierCounters(tiers) == tiersBefore)
        // A request the pool cannot take: refused with its block counts, the sequence as it was.
        #expect(c.add(2, Array(100 ..< 160)) == 0)
        #expect(kvcache_tiers_admit(c.handle, tiers, 2, 60, &out) == KVCACHE_ERR_INSUFFICIENT_BLOCKS.code)
        #expect(String(cString: kvcache_last_error()).hasSuffix("need 15 blocks, 12 available"))
        // An admitted sequence is not admitted twice.
        #expect(kvcache_tiers_admit(c.handle, tiers, 1, 10, &out) == 0)
        #expect(out.compute_tokens == 10 && out.device_tokens == 0 && out.loaded_tokens == 0)
        let admitted = c.snapshot([1, 2])
        #expect(kvcache_tiers_admit(c.handle, tiers, 1, 10, &out) == KVCACHE_ERR_INVALID_ARGUMENT.code)
        #expect(c.snapshot([1, 2]) == admitted)
        #expect(c.validate() == 0 && kvcache_tiers_validate(tiers) == 0)
    }

    /// Either handle may go first; a detached cache forgets the tiers and can take others.
    @Test func lifetimesInEitherOrder() throws {
        // The tiers destroyed first: the cache keeps them alive, its evictions still go down to them.
        do {
            let c = try CCache(blockTokens: 4, capacity: Self.capacity)
            let tiers = try Self.openTiers()
            #expect(kvcache_tiers_attach(c.handle, tiers) == 0)
            #expect(c.add(1, Array(0 ..< 45)) == 0)
            var out = kvcache_tier_admission()
            #expect(kvcache_tiers_admit(c.handle, tiers, 1, 45, &out) == 0)
            #expect(c.commit(1, out.compute_tokens) == 0)
            #expect(kvcache_tiers_record_stored(c.handle, tiers, 1, 0) == 0)
            #expect(c.free(1) == 0)
            #expect(kvcache_tiers_destroy(tiers) == 0)
            #expect(c.add(2, Array(100 ..< 145)) == 0)   // evicts the first prompt's blocks into the tiers
            #expect(c.allocate(2, 45).0 == 0)
            #expect(c.validate() == 0)
        }
        // The cache destroyed first: the tiers stay usable and hold what it evicted.
        do {
            let tiers = try Self.openTiers()
            defer { _ = kvcache_tiers_destroy(tiers) }
            var keys = [kvcache_key](repeating: kvcache_key(), count: 11)
            do {
                let c = try CCache(blockTokens: 4, capacity: Self.capacity)
                #expect(kvcache_tiers_attach(c.handle, tiers) == 0)
                #expect(c.add(1, Array(0 ..< 45)) == 0)
                var n = 0
                #expect(kvcache_prompt_keys(c.handle, 1, &keys, 11, &n) == 0 && n == 11)
                var out = kvcache_tier_admission()
                #expect(kvcache_tiers_admit(c.handle, tiers, 1, 45, &out) == 0)
                #expect(c.commit(1, out.compute_tokens) == 0)
                #expect(kvcache_tiers_record_stored(c.handle, tiers, 1, 0) == 0)
                #expect(c.free(1) == 0)
                #expect(c.add(2, Array(100 ..< 145)) == 0)
                #expect(c.allocate(2, 45).0 == 0)
            }
            var plan = kvcache_tier_lookup()
            #expect(kvcache_tiers_lookup(tiers, &keys, 11, 0, 11, nil, 0, &plan) == 0)
            #expect(plan.host_blocks == 10)   // the host tier is full of the evicted prompt
            #expect(kvcache_tiers_validate(tiers) == 0)
            // The tiers are free again: another cache may take them.
            let next = try CCache(blockTokens: 4, capacity: Self.capacity)
            #expect(kvcache_tiers_attach(next.handle, tiers) == 0)
            #expect(kvcache_tiers_detach(next.handle) == 0)
            #expect(kvcache_tiers_detach(next.handle) == KVCACHE_ERR_INVALID_ARGUMENT.code)
            let other = try Self.openTiers()
            defer { _ = kvcache_tiers_destroy(other) }
            #expect(kvcache_tiers_attach(next.handle, other) == 0)
        }
    }
}
