import Testing
import KVCache
import KVRuntime
import KVTestSupport
import KVTiers

@Suite("Tiered replay harness (core + tiers through PrefixPlanner, real bytes)")
struct TieredReplayHarnessTests {
    /// Requests are prefixes of a few long documents (shared system prompts), picked at random.
    static func requests(seed: UInt64, count: Int, docs: Int = 6, maxBlocks: Int = 10) -> [[BlockKey]] {
        var rng = SplitMix64(seed: seed)
        let chains: [[BlockKey]] = (0 ..< docs).map { d in (0 ..< maxBlocks).map { testKey(d * 1000 + $0, salt: seed) } }
        return (0 ..< count).map { _ in
            let d = Int(rng.next() % UInt64(docs))
            let n = 1 + Int(rng.next() % UInt64(maxBlocks))
            return Array(chains[d].prefix(n))
        }
    }

    /// With lower tiers large enough to hold everything, every block seen before is a hit somewhere:
    /// the total hit count equals that of an unbounded device pool, and every loaded byte is right.
    @Test(arguments: [UInt64(1), 2])
    func largeLowerTiersMatchUnboundedHitRate(seed: UInt64) throws {
        let reqs = Self.requests(seed: seed, count: 120)
        let dir = TempDirectory()
        var small = TieredReplayHarness.Config(blockTokens: 4, deviceBlocks: 12, hostBlocks: 8, diskBlocks: 200, diskDirectory: dir.path)
        small.verify = true
        let tiered = try TieredReplayHarness(small)
        let unbounded = try TieredReplayHarness(.init(blockTokens: 4, deviceBlocks: 1000, hostBlocks: 0))
        var t = TieredReplayHarness.RequestHits(), u = TieredReplayHarness.RequestHits()
        for r in reqs {
            let a = try tiered.serve(keys: r), b = try unbounded.serve(keys: r)
            #expect(a.deviceBlocks + a.hostBlocks + a.diskBlocks == b.deviceBlocks, "per-request hit blocks differ")
            t.deviceBlocks += a.deviceBlocks; t.hostBlocks += a.hostBlocks; t.diskBlocks += a.diskBlocks
            u.deviceBlocks += b.deviceBlocks
            try tiered.tiers.validate()
        }
        #expect(t.hostBlocks > 0 && t.diskBlocks > 0, "the workload must exercise L2 and L3")
        #expect(tiered.mismatchedBlocks == 0)
        #expect(tiered.verifiedBlocks == t.deviceBlocks + t.hostBlocks + t.diskBlocks)
        let s = tiered.tiers.statistics
        #expect(s.host.loadedBlocks == t.hostBlocks + t.diskBlocks)   // disk loads pass through host
        #expect(s.disk.loadedBlocks == t.diskBlocks)
        #expect(s.host.droppedBlocks == 0)
    }

    /// Disk alone below the device pool (no host tier) also recovers every hit.
    @Test func diskAloneMatchesUnboundedHitRate() throws {
        let dir = TempDirectory()
        let tiered = try TieredReplayHarness(.init(blockTokens: 4, deviceBlocks: 12, hostBlocks: 0, diskBlocks: 200, diskDirectory: dir.path))
        let unbounded = try TieredReplayHarness(.init(blockTokens: 4, deviceBlocks: 1000, hostBlocks: 0))
        var disk = 0
        for r in Self.requests(seed: 9, count: 80) {
            let a = try tiered.serve(keys: r), b = try unbounded.serve(keys: r)
            #expect(a.deviceBlocks + a.diskBlocks == b.deviceBlocks && a.hostBlocks == 0)
            disk += a.diskBlocks
        }
        #expect(disk > 0 && tiered.mismatchedBlocks == 0)
    }

    /// A second run on the same directory starts cold by default, or warm from the first run's disk tier.
    @Test func diskDirectoryStartsFreshOrWarm() throws {
        let dir = TempDirectory()
        let chain = (0 ..< 6).map { testKey($0, salt: 41) }
        let filler = (0 ..< 6).map { testKey($0, salt: 42) }
        do {
            let c = try TieredReplayHarness(.init(blockTokens: 4, deviceBlocks: 6, hostBlocks: 0, diskBlocks: 64, diskDirectory: dir.path))
            _ = try c.serve(keys: chain)
            _ = try c.serve(keys: filler)   // pushes the chain to disk
            c.close()
        }
        var warm = TieredReplayHarness.Config(blockTokens: 4, deviceBlocks: 6, hostBlocks: 0, diskBlocks: 64, diskDirectory: dir.path)
        warm.freshDisk = false
        do {
            let c = try TieredReplayHarness(warm)
            #expect(try c.serve(keys: chain).diskBlocks == 6)
            #expect(c.mismatchedBlocks == 0)
            c.close()
        }
        let cold = try TieredReplayHarness(.init(blockTokens: 4, deviceBlocks: 6, hostBlocks: 0, diskBlocks: 64, diskDirectory: dir.path))
        #expect(try cold.serve(keys: chain).diskBlocks == 0)
    }

    /// Without lower tiers, the tiered cache is exactly the core: no host or disk hits.
    @Test func noLowerTiersIsJustTheCore() throws {
        let c = try TieredReplayHarness(.init(blockTokens: 4, deviceBlocks: 12, hostBlocks: 0))
        for r in Self.requests(seed: 5, count: 60) {
            let h = try c.serve(keys: r)
            #expect(h.hostBlocks == 0 && h.diskBlocks == 0)
        }
        #expect(c.mismatchedBlocks == 0)
    }

    @Test func writeThroughCopiesAtStoreAndWriteAfterHitsDropsColdBlocks() throws {
        var cfg = TieredReplayHarness.Config(blockTokens: 4, deviceBlocks: 4, hostBlocks: 16)
        cfg.writePolicy = .writeThrough
        let wt = try TieredReplayHarness(cfg)
        let a = (0 ..< 3).map { testKey($0, salt: 1) }
        _ = try wt.serve(keys: a)
        wt.tiers.waitForTransfers()
        #expect(wt.tiers.statistics.host.storedBlocks == 3, "write-through copies as soon as blocks are stored")

        cfg.writePolicy = .writeAfterHits(2)
        let sel = try TieredReplayHarness(cfg)
        let hot = (0 ..< 2).map { testKey($0, salt: 2) }
        let cold = (0 ..< 2).map { testKey($0, salt: 3) }
        _ = try sel.serve(keys: hot)
        _ = try sel.serve(keys: hot)
        _ = try sel.serve(keys: hot)          // second hit: copied to host
        sel.tiers.waitForTransfers()
        _ = try sel.serve(keys: cold)
        let evictor = (0 ..< 4).map { testKey($0, salt: 4) }
        _ = try sel.serve(keys: evictor)      // evicts hot and cold from L1
        let h1 = try sel.serve(keys: hot), h2 = try sel.serve(keys: cold)
        #expect(h1.hostBlocks == 2)
        #expect(h2.hostBlocks == 0 && h2.deviceBlocks == 0)
        #expect(sel.tiers.statistics.device.droppedBlocks >= 2)
        #expect(sel.mismatchedBlocks == 0)
    }
}
