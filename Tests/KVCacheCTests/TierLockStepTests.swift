#if canImport(Glibc)
import Glibc
#endif
import CKVCache
import KVCache
import KVPlan
import KVTiers
import Testing

/// The tier calls of kvcache.h in lock-step with `KVTierManager` built from the same configuration:
/// seeded random sequences of store, lookup, load, touch, loadable and evict calls (invalid ones mixed
/// in) must give the same statuses, out-parameters, per-block outcomes, bytes, events and counters, and
/// both must pass `validate()` after every step. The host tier is small, so stores evict host blocks to
/// the disk tier and loads bring them back through host.
struct TierLockStepTests {
    static let layout = try! KVGeometry(layers: 2, kvHeads: 1, headDim: 8, dtype: .fp16, blockTokens: 4)

    /// The Swift twin's tier configuration, as the C side's is set: two layer groups, one worker, events on,
    /// eviction copies made at once, no calibration and no page-locking, so both sides run alike.
    static func twinConfig(hostBlocks: Int, disk: DiskStoreConfig? = nil) -> TierConfig {
        var tc = TierConfig(layout: layout, hostBlocks: hostBlocks, disk: disk)
        tc.layerGroups = 2
        tc.workers = 1
        tc.recordEvents = true
        tc.calibrateAtStart = false
        tc.lockHostMemory = false
        tc.synchronousEvictionCopies = true
        return tc
    }
    static let deviceBlocks = 8
    static let hostBlocks = 5

    /// Deterministic bytes of a block holding `key`.
    static func bytes(of key: BlockKey) -> [UInt8] {
        var r = SplitMix64(seed: key.lo ^ (key.hi &* 31))
        return (0 ..< layout.bytesPerBlock).map { _ in UInt8.random(in: 0 ... 255, using: &r) }
    }

    final class Harness {
        let dirC = ScratchDirectory("kvtiers-c")
        let dirS = ScratchDirectory("kvtiers-s")
        let c: OpaquePointer
        let s: KVTierManager
        let sDevice: HostDeviceMemory
        var rng: SplitMix64
        /// The key each device block holds (the engine's own knowledge), nil when none.
        var holds = [BlockKey?](repeating: nil, count: TierLockStepTests.deviceBlocks)
        var counts = [String: Int]()

        init(seed: UInt64) throws {
            var config = kvcache_tiers_config()
            #expect(kvcache_tiers_config_init(&config) == 0)
            config.layers = 2; config.kv_heads = 1; config.head_dim = 8; config.dtype_bytes = 2; config.block_tokens = 4
            config.device_blocks = Int64(TierLockStepTests.deviceBlocks)
            config.host_blocks = Int64(TierLockStepTests.hostBlocks)
            config.disk_capacity_bytes = 1 << 22
            config.layer_groups = 2
            config.workers = 1   // copies finish in submission order: the host LRU order is deterministic
            config.spill_watermark = 1   // disk writes only on host eviction: deterministic
            config.record_events = true
            config.synchronous_eviction_copies = true
            var out: OpaquePointer?
            let status = dirC.path.withCString { p in
                config.disk_directory = p
                return kvcache_tiers_create_checked(UInt32(KVCACHE_ABI_VERSION), MemoryLayout<kvcache_tiers_config>.size,
                                                    &config, &out)
            }
            guard status == 0, let out else { throw CStatus(status) }
            c = out
            var tc = TierLockStepTests.twinConfig(
                hostBlocks: TierLockStepTests.hostBlocks,
                disk: DiskStoreConfig(directory: dirS.path, capacityBytes: 1 << 22, layout: TierLockStepTests.layout))
            tc.spillWatermark = 1
            sDevice = try HostDeviceMemory(layout: TierLockStepTests.layout, capacityBlocks: TierLockStepTests.deviceBlocks)
            s = try KVTierManager(config: tc, device: sDevice)
            rng = SplitMix64(seed: seed)
        }

        deinit { _ = kvcache_tiers_destroy(c) }

        /// Key j of chain t (a prompt's j-th block).
        func key(_ t: Int, _ j: Int) -> BlockKey { BlockKey(lo: UInt64(t * 100 + j + 1), hi: 0xC0FFEE) }
        func chain(_ t: Int, _ n: Int) -> [BlockKey] { (0 ..< n).map { key(t, $0) } }
        func ckeys(_ keys: [BlockKey]) -> [kvcache_key] { keys.map { kvcache_key(lo: $0.lo, hi: $0.hi) } }
        func distinctBlocks(_ n: Int) -> [BlockID] {
            var all = Array(0 ..< Int32(TierLockStepTests.deviceBlocks))
            all.shuffle(using: &rng)
            return Array(all.prefix(n))
        }

        func cDeviceBlock(_ b: BlockID) -> UnsafeMutableRawBufferPointer {
            var data: UnsafeMutableRawPointer?
            var length = 0
            #expect(kvcache_tiers_device_block(c, b, &data, &length) == 0)
            return UnsafeMutableRawBufferPointer(start: data, count: length)
        }

        func step() throws {
            let t = Int.random(in: 0 ..< 4, using: &rng)
            let n = Int.random(in: 1 ... 5, using: &rng)
            let keys = chain(t, n)
            var ck = ckeys(keys)
            switch Int.random(in: 0 ..< 9, using: &rng) {
            case 0, 1:   // store: the engine wrote the chain into device blocks, then offloads it
                counts["store", default: 0] += 1
                let blocks = distinctBlocks(n)
                for (b, k) in zip(blocks, keys) {
                    holds[Int(b)] = k
                    let bytes = TierLockStepTests.bytes(of: k)
                    cDeviceBlock(b).copyBytes(from: bytes)
                    _ = sDevice.withBlock(b) { $0.copyBytes(from: bytes) }
                }
                var id: UInt64 = 0
                #expect(kvcache_tiers_prepare_store(c, blocks, &ck, n, nil, &id) == 0)
                var ok = [UInt8](repeating: 9, count: n)
                var stored = 0
                #expect(kvcache_tiers_complete_store(c, id, &ok, n, &stored) == 0)
                let h = try s.store(blocks: blocks, keys: keys, firstParent: nil)
                h.wait()
                let expected = (0 ..< n).map { UInt8(h.failedBlocks.contains($0) ? 0 : 1) }
                #expect(ok == expected)
                #expect(stored == expected.count { $0 == 1 })
            case 2, 3:   // lookup
                counts["lookup", default: 0] += 1
                let dev = Int.random(in: 0 ... n, using: &rng)
                let maxBlocks = Int.random(in: 0 ... 6, using: &rng)
                var locations = [Int32](repeating: -7, count: n)
                var out = kvcache_tier_lookup()
                let plan = s.lookup(keys: keys, deviceBlocks: dev, maxBlocks: maxBlocks)
                #expect(kvcache_tiers_lookup(c, &ck, n, Int64(dev), Int64(maxBlocks), &locations, n, &out) == 0)
                #expect(out.device_blocks == Int64(plan.deviceBlocks))
                #expect(out.host_blocks == Int64(plan.hostBlocks) && out.disk_blocks == Int64(plan.diskBlocks))
                #expect(Array(locations.prefix(plan.loadBlocks)) == plan.locations.map { Int32($0.rawValue) })
            case 4, 5:   // load the blocks after the first `first` into fresh device blocks
                counts["load", default: 0] += 1
                let first = Int.random(in: 0 ..< n, using: &rng)
                let count = Int.random(in: 1 ... n - first, using: &rng)
                let dst = distinctBlocks(count)
                var id: UInt64 = 0
                #expect(kvcache_tiers_prepare_load(c, &ck, n, first, dst, count, &id) == 0)
                var ok = [UInt8](repeating: 9, count: count)
                var prefix = -1
                #expect(kvcache_tiers_complete_load(c, id, &ok, count, &prefix) == 0)
                let h = try s.load(keys: keys, first: first, into: dst)
                h.wait()
                #expect(prefix == h.loadedPrefixBlocks)
                #expect(ok == (0 ..< count).map { UInt8(h.failedBlocks.contains($0) ? 0 : 1) })
                for (i, b) in dst.enumerated() { holds[Int(b)] = i < h.loadedPrefixBlocks ? keys[first + i] : nil }
                for i in 0 ..< h.loadedPrefixBlocks {   // the real bytes came back, on both sides
                    let want = TierLockStepTests.bytes(of: keys[first + i])
                    #expect(Array(cDeviceBlock(dst[i])) == want)
                    #expect(sDevice.withBlock(dst[i]) { Array($0) } == want)
                }
            case 6:   // touch and loadable
                counts["touch", default: 0] += 1
                var found = -1
                #expect(kvcache_tiers_touch(c, &ck, n, &found) == 0)
                #expect(found == s.touch(keys: keys))
                var tier: Int32 = -9
                #expect(kvcache_tiers_loadable(c, ck[n - 1], &tier) == 0)
                #expect(tier == s.loadableTier(of: keys[n - 1]).map { Int32($0.rawValue) } ?? -1)
            case 7:   // the device reuses a block, copied to host first when it is not there
                counts["evict", default: 0] += 1
                let b = distinctBlocks(1)[0]
                guard let k = holds[Int(b)] else { break }
                holds[Int(b)] = nil
                #expect(kvcache_tiers_will_evict(c, b, kvcache_key(lo: k.lo, hi: k.hi)) == 0)
                s.willEvict(block: b, key: k)
            default:  // refused calls change nothing
                counts["invalid", default: 0] += 1
                let before = stats()
                var id: UInt64 = 77
                let dst = distinctBlocks(2)
                #expect(kvcache_tiers_prepare_load(c, &ck, n, n, dst, 2, &id) == KVCACHE_ERR_INVALID_ARGUMENT.code)
                #expect(throws: TierError.self) { _ = try s.load(keys: keys, first: n, into: dst) }
                #expect(id == 77)
                var out = kvcache_tier_lookup()
                var small = [Int32](repeating: 0, count: 1)
                if n > 1 {
                    #expect(kvcache_tiers_lookup(c, &ck, n, 0, 9, &small, 1, &out) == KVCACHE_ERR_BUFFER_TOO_SMALL.code)
                }
                var prefix = 5
                #expect(kvcache_tiers_complete_load(c, 123_456, nil, 0, &prefix) == KVCACHE_ERR_INVALID_ARGUMENT.code)
                #expect(prefix == 5)
                #expect(kvcache_tiers_copy_done(c, 99, true) == KVCACHE_ERR_INVALID_ARGUMENT.code)
                #expect(kvcache_tiers_will_evict(c, Int32(TierLockStepTests.deviceBlocks), ck[0])
                        == KVCACHE_ERR_INVALID_ARGUMENT.code)
                var zero = kvcache_key(lo: 0, hi: 0)
                var block: Int32 = 0
                #expect(kvcache_tiers_prepare_store(c, &block, &zero, 1, nil, &id) == KVCACHE_ERR_INVALID_ARGUMENT.code)
                #expect(id == 77)
                #expect(stats() == before)
            }
            compare()
        }

        /// The C counters as `TierCounters` fields, to compare with the Swift manager's.
        func stats() -> [Int64] {
            var st = kvcache_tier_stats()
            #expect(kvcache_tiers_get_stats(c, &st) == 0)
            return [st.device, st.host, st.disk].flatMap(Self.fields)
        }

        static func fields(_ t: kvcache_tier_counters) -> [Int64] {
            [t.hits, t.stored_blocks, t.removed_blocks, t.bytes_in, t.bytes_out, t.occupancy, t.capacity,
             t.loaded_blocks, t.not_stored, t.failed_loads, t.dropped_blocks]
        }

        static func fields(_ t: TierCounters) -> [Int64] {
            [t.hits, t.storedBlocks, t.removedBlocks, t.bytesIn, t.bytesOut, t.occupancy, t.capacity,
             t.loadedBlocks, t.notStored, t.failedLoads, t.droppedBlocks].map(Int64.init)
        }

        func compare() {
            let st = s.statistics
            #expect(stats() == [st.device, st.host, st.disk].flatMap(Self.fields))
            #expect(kvcache_tiers_validate(c) == 0)
            #expect(throws: Never.self) { try s.validate() }
            var events = [kvcache_event](repeating: kvcache_event(), count: 64)
            var keys = [kvcache_key](repeating: kvcache_key(), count: 64)
            var ne = 0, nk = 0
            #expect(kvcache_tiers_take_events(c, &events, 64, &ne, &keys, 64, &nk) == 0)
            var swiftEvents: [KVEvent] = []
            s.drainEvents(into: &swiftEvents)
            #expect(ne == swiftEvents.count)
            // Copies of one call finish on several transfer threads, so events of one step may come in
            // either order: compared as sets of (kind, tier, has parent, key).
            var fromC: [String] = []
            for e in events.prefix(ne) {
                for k in keys[e.first_key ..< e.first_key + e.key_count] {
                    fromC.append("\(e.kind) \(e.tier) \(e.has_parent) \(BlockKey(lo: k.lo, hi: k.hi))")
                }
            }
            var fromSwift: [String] = []
            for e in swiftEvents {
                switch e {
                case .blockStored(let ks, let parent, _, let tier, _):
                    fromSwift += ks.map { "\(KVCACHE_EVENT_BLOCK_STORED.code32) \(tier.rawValue) \(parent != nil) \($0)" }
                case .blockRemoved(let ks, let tier):
                    fromSwift += ks.map { "\(KVCACHE_EVENT_BLOCK_REMOVED.code32) \(tier.rawValue) false \($0)" }
                case .allBlocksCleared: Issue.record("the tiers never clear all blocks")
                }
            }
            #expect(fromC.sorted() == fromSwift.sorted())
        }
    }

    @Test(arguments: [1, 2, 3, 4] as [UInt64])
    func randomSequencesAgree(seed: UInt64) throws {
        let h = try Harness(seed: seed)
        for _ in 0 ..< 300 { try h.step() }
        // Every kind of step ran, and the tiers really moved blocks both ways.
        #expect(h.counts.count == 6)
        let st = h.s.statistics
        #expect(st.host.loadedBlocks > 0 && st.disk.loadedBlocks > 0 && st.disk.storedBlocks > 0)
    }
}

/// A fresh directory under /tmp, removed with its files when the value goes away (the disk tiers of a test).
final class ScratchDirectory {
    let path: String

    init(_ tag: String) {
        var template = Array("/tmp/\(tag)-XXXXXX".utf8CString)
        let p = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(p != nil, "mkdtemp failed")
        path = String(cString: p!)
    }

    deinit { _ = system("rm -rf '\(path)'") }
}
