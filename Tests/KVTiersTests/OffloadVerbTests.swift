import KVCache
import KVPlan
import KVTestSupport
@testable import KVTiers
import Testing

/// The offload verbs keyed by block key (`store`, `load(keys:first:into:)`, `loadableTier`, `touch`,
/// `promote`, `putToStore`, `readFromStore`) over random sequences, checked against a model of which keys the tiers
/// hold and against the bytes each key stands for; `validate()` after every step.
struct OffloadVerbTests {
    static let layout = smallLayout
    static let deviceBlocks = 6

    final class Harness {
        let dir = TempDirectory("kvoffload")
        let device: HostDeviceMemory
        let tiers: KVTierManager
        var rng: SplitMix64
        /// Keys stored at least once (the disk never fills here, so none is lost).
        var stored = Set<BlockKey>()

        init(seed: UInt64, hostBlocks: Int) throws {
            var config = TierConfig(layout: OffloadVerbTests.layout, hostBlocks: hostBlocks,
                                    disk: DiskStoreConfig(directory: dir.path, capacityBytes: 1 << 22,
                                                          layout: OffloadVerbTests.layout))
            config.workers = 1
            config.spillWatermark = 1
            config.calibrateAtStart = false
            config.lockHostMemory = false
            config.layerGroups = 2
            device = try HostDeviceMemory(layout: OffloadVerbTests.layout, capacityBlocks: OffloadVerbTests.deviceBlocks)
            tiers = try KVTierManager(config: config, device: device)
            rng = SplitMix64(seed: seed)
        }

        func key(_ t: Int, _ j: Int) -> BlockKey { BlockKey(lo: UInt64(t * 64 + j + 1), hi: 77) }

        func blocks(_ n: Int) -> [BlockID] {
            var all = Array(0 ..< Int32(OffloadVerbTests.deviceBlocks))
            all.shuffle(using: &rng)
            return Array(all.prefix(n))
        }

        func step() throws {
            let t = Int.random(in: 0 ..< 3, using: &rng)
            let n = Int.random(in: 1 ... 4, using: &rng)
            let keys = (0 ..< n).map { key(t, $0) }
            switch Int.random(in: 0 ..< 6, using: &rng) {
            case 0, 1:
                let b = blocks(n)
                for (block, k) in zip(b, keys) {
                    _ = device.withBlock(block) { $0.copyBytes(from: expectedBytes(for: k, layout: OffloadVerbTests.layout)) }
                }
                let h = try tiers.store(blocks: b, keys: keys, firstParent: nil)
                h.wait()
                #expect(h.failedBlocks.isEmpty)   // at most 4 keys, at least 4 host slots: always room
                stored.formUnion(keys)
            case 2:
                let first = Int.random(in: 0 ..< n, using: &rng)
                let b = blocks(n - first)
                let h = try tiers.load(keys: keys, first: first, into: b)
                h.wait()
                var expected = 0
                while first + expected < n && stored.contains(keys[first + expected]) { expected += 1 }
                #expect(h.loadedPrefixBlocks == expected)
                for i in 0 ..< h.loadedPrefixBlocks {
                    #expect(device.withBlock(b[i]) { Array($0) } == expectedBytes(for: keys[first + i], layout: OffloadVerbTests.layout))
                }
            case 3:
                #expect(tiers.touch(keys: keys) <= n)
                for k in keys { #expect((tiers.loadableTier(of: k) != nil) == stored.contains(k)) }
            case 4:
                // Promotion: the disk blocks among the keys come up to host in the background, never at the
                // expense of the keys on host already; once the transfers are done, every one counted as
                // on its way is on host, and nothing was lost.
                let onDisk = keys.filter { tiers.loadableTier(of: $0) == .disk }
                let onHost = keys.filter { tiers.loadableTier(of: $0) == .host }
                let pending = tiers.promote(keys: keys)
                #expect(pending <= onDisk.count)
                tiers.waitForTransfers()
                #expect(onDisk.count { tiers.loadableTier(of: $0) == .host } >= pending)
                #expect(onHost.allSatisfy { tiers.loadableTier(of: $0) == .host })
                for k in keys { #expect((tiers.loadableTier(of: k) != nil) == stored.contains(k)) }
            default:
                let k = key(3, Int.random(in: 0 ..< 8, using: &rng))
                let bytes = expectedBytes(for: k, layout: OffloadVerbTests.layout)
                let fresh = try bytes.withUnsafeBytes { b in try tiers.putToStore(k, parent: nil, bytes: b) }
                #expect(fresh == !stored.contains(k) || tiers.loadableTier(of: k) == .host)
                stored.insert(k)
                var back = [UInt8](repeating: 0, count: bytes.count)
                let hit = try back.withUnsafeMutableBytes { b in try tiers.readFromStore(k, into: b) }
                #expect(hit && back == bytes)
            }
            try tiers.validate()
        }
    }

    @Test(arguments: [(1, 4), (2, 4), (3, 8)] as [(UInt64, Int)])
    func randomSequencesKeepTheModel(seed: UInt64, hostBlocks: Int) throws {
        let h = try Harness(seed: seed, hostBlocks: hostBlocks)
        for _ in 0 ..< 150 { try h.step() }
        #expect(h.tiers.statistics.disk.storedBlocks > 0)
    }

    @Test func refusedCallsStartNothing() throws {
        let h = try Harness(seed: 9, hostBlocks: 4)
        let before = h.tiers.statistics.host
        #expect(throws: TierError.self) { _ = try h.tiers.store(blocks: [0, 1], keys: [h.key(0, 0)], firstParent: nil) }
        #expect(throws: TierError.self) { _ = try h.tiers.store(blocks: [9], keys: [h.key(0, 0)], firstParent: nil) }
        #expect(throws: TierError.self) { _ = try h.tiers.store(blocks: [0], keys: [.zero], firstParent: nil) }
        #expect(throws: TierError.self) { _ = try h.tiers.load(keys: [h.key(0, 0)], first: -1, into: [0]) }
        let short = [UInt8](repeating: 0, count: 3)
        #expect(throws: TierError.self) {
            try short.withUnsafeBytes { b in _ = try h.tiers.putToStore(h.key(0, 0), parent: nil, bytes: b) }
        }
        #expect(h.tiers.statistics.host == before)
        #expect(h.tiers.loadableTier(of: h.key(0, 0)) == nil)
    }
}
