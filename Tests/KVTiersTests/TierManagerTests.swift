#if canImport(Glibc)
import Glibc
#endif
import Testing
import KVCache
import KVTestSupport
import KVPlan
@testable import KVTiers

@Suite("Tier manager")
struct TierManagerTests {
    let layout = try! KVGeometry(layers: 2, kvHeads: 2, headDim: 16, dtype: .fp16, blockTokens: 4)

    func evictToHost(_ tiers: KVTierManager, _ mem: HostDeviceMemory, _ keys: [BlockKey]) {
        for (i, k) in keys.enumerated() {
            _ = mem.withBlock(BlockID(i)) { KeyPayload.fill($0, key: k) }
            tiers.noteStored(block: BlockID(i), key: k)
            tiers.willEvict(block: BlockID(i), key: k)
            tiers.waitForEvictionCopies()
        }
        tiers.waitForTransfers()
    }

    /// Every move between tiers shows up as an event with its tier, in order.
    @Test func eventsNameTheTier() throws {
        let dir = TempDirectory()
        let mem = try HostDeviceMemory(layout: layout, capacityBlocks: 8)
        var cfg = TierConfig(layout: layout, hostBlocks: 2,
                             disk: DiskStoreConfig(directory: dir.path, capacityBytes: 1 << 20, layout: layout))
        cfg.recordEvents = true
        cfg.spillWatermark = 1.0
        cfg.lockHostMemory = false
        let tiers = try KVTierManager(config: cfg, device: mem)
        let keys = (0 ..< 3).map { testKey($0, salt: 31) }
        evictToHost(tiers, mem, keys)
        var events: [KVEvent] = []
        tiers.drainEvents(into: &events)
        let expected: [KVEvent] = [
            .blockStored(keys: [keys[0]], parent: nil, blockTokens: 4, tier: .host),
            .blockStored(keys: [keys[1]], parent: nil, blockTokens: 4, tier: .host),
            .blockStored(keys: [keys[0]], parent: nil, blockTokens: 4, tier: .disk),   // host full: LRU to disk
            .blockRemoved(keys: [keys[0]], tier: .host),
            .blockStored(keys: [keys[2]], parent: nil, blockTokens: 4, tier: .host),
        ]
        #expect(events == expected)
        let s = tiers.statistics
        #expect(s.host.storedBlocks == 3 && s.host.removedBlocks == 1 && s.host.occupancy == 2)
        #expect(s.disk.storedBlocks == 1 && s.disk.occupancy == 1)
        #expect(s.device.removedBlocks == 3)
    }

    /// A manager with the tiers attached gives one stream: the device pool's removal, then the tier's
    /// store of the same key.
    @Test func tierEventsJoinTheManagersStream() throws {
        let m = try KVCacheManager(KVCacheConfig(blockTokens: 4, capacityBlocks: 2, recordEvents: true))
        let mem = try HostDeviceMemory(layout: layout, capacityBlocks: 2)
        var cfg = TierConfig(layout: layout, hostBlocks: 4)
        cfg.recordEvents = true
        cfg.lockHostMemory = false
        cfg.synchronousEvictionCopies = true
        let tiers = try KVTierManager(config: cfg, device: mem)
        m.evictionObserver = tiers
        m.lowerTierEvents = [tiers]
        let first = (0 ..< 2).map { testKey($0, salt: 51) }, second = (0 ..< 2).map { testKey($0, salt: 52) }
        for (n, keys) in [first, second].enumerated() {
            let id = SequenceID(Int64(n))
            try m.addSequence(id, promptKeys: keys, promptTokens: 9)
            _ = try m.lookup(id)
            #expect(try m.allocate(id, newTokens: 8) == .allocated(newBlocks: 2))
            for (i, b) in try m.blockTable(id).enumerated() {
                _ = mem.withBlock(b) { KeyPayload.fill($0, key: keys[i]) }
            }
            try m.commit(id, computedTokens: 8)
            for (i, b) in try m.blockTable(id).enumerated() { tiers.noteStored(block: b, key: keys[i]) }
            try m.free(id)
        }
        tiers.waitForTransfers()
        var events: [KVEvent] = []
        m.drainEvents(into: &events)
        let device = events.filter { if case .blockRemoved(_, .device) = $0 { return true }; return false }
        let host = events.filter { if case .blockStored(_, _, _, .host, _) = $0 { return true }; return false }
        let removed = device.flatMap { if case .blockRemoved(let k, _) = $0 { return k }; return [] }
        #expect(Set(removed) == Set(first) && host.count == 2)
        #expect(Set(host.flatMap { if case .blockStored(let k, _, _, _, _) = $0 { return k }; return [] }) == Set(first))
        var again: [KVEvent] = []
        m.drainEvents(into: &again)
        #expect(again.isEmpty)
    }

    /// A disk that fails (ENOSPC, then EIO) under the tiers: blocks are "not stored" and counted, the
    /// manager keeps working, and what host holds still loads with the right bytes.
    @Test func failingDiskIsNotStoredNeverACrash() throws {
        #if DEBUG
        let dir = TempDirectory()
        let faults = IOFaultInjector()
        var disk = DiskStoreConfig(directory: dir.path, capacityBytes: 1 << 20, layout: layout)
        disk.faults = faults
        let mem = try HostDeviceMemory(layout: layout, capacityBlocks: 8)
        var cfg = TierConfig(layout: layout, hostBlocks: 2, disk: disk)
        cfg.spillWatermark = 1.0
        cfg.lockHostMemory = false
        let tiers = try KVTierManager(config: cfg, device: mem)
        faults.failWrites(afterBytes: 0, errno: ENOSPC)
        let keys = (0 ..< 4).map { testKey($0, salt: 32) }
        evictToHost(tiers, mem, keys)
        var s = tiers.statistics
        #expect(s.disk.notStored == 2 && s.diskStore?.notStored == 2)
        #expect(s.disk.storedBlocks == 0 && s.host.droppedBlocks == 2)
        let plan = tiers.lookup(keys: Array(keys[2...]), deviceBlocks: 0)
        #expect(plan.locations == [.host, .host])
        let h = try tiers.load(plan, keys: Array(keys[2...]), into: [6, 7])
        h.wait()
        #expect(h.loadedPrefixBlocks == 2)
        var expected = [UInt8](repeating: 0, count: layout.bytesPerBlock)
        expected.withUnsafeMutableBytes { KeyPayload.fill($0, key: keys[3]) }
        #expect(mem.withBlock(7) { Array($0) } == expected)
        faults.heal()
        evictToHost(tiers, mem, [testKey(9, salt: 32)])
        s = tiers.statistics
        #expect(s.disk.storedBlocks == 1)
        try tiers.validate()
        #endif
    }

    /// Write-back copies a block to host only the first time it leaves L1.
    @Test func writeBackCopiesOnlyTheFirstTime() throws {
        let mem = try HostDeviceMemory(layout: layout, capacityBlocks: 4)
        var cfg = TierConfig(layout: layout, hostBlocks: 4)
        cfg.lockHostMemory = false
        let tiers = try KVTierManager(config: cfg, device: mem)
        let k = testKey(1, salt: 33)
        evictToHost(tiers, mem, [k])
        let plan = tiers.lookup(keys: [k], deviceBlocks: 0)
        let h = try tiers.load(plan, keys: [k], into: [2])
        h.wait()
        tiers.willEvict(block: 2, key: k)
        tiers.waitForTransfers()
        #expect(tiers.statistics.host.storedBlocks == 1)
        #expect(tiers.statistics.host.loadedBlocks == 1)
    }

    /// With no host tier, evicted blocks go straight to disk and load back from there.
    @Test func diskWithoutHostTier() throws {
        let dir = TempDirectory()
        let mem = try HostDeviceMemory(layout: layout, capacityBlocks: 4)
        let cfg = TierConfig(layout: layout, hostBlocks: 0,
                             disk: DiskStoreConfig(directory: dir.path, capacityBytes: 1 << 20, layout: layout))
        let tiers = try KVTierManager(config: cfg, device: mem)
        let keys = (0 ..< 2).map { testKey($0, salt: 34) }
        evictToHost(tiers, mem, keys)
        #expect(tiers.location(of: keys[0]) == .disk)
        let plan = tiers.lookup(keys: keys, deviceBlocks: 0)
        #expect(plan.locations == [.disk, .disk])
        let h = try tiers.load(plan, keys: keys, into: [2, 3])
        h.wait()
        #expect(h.loadedPrefixBlocks == 2)
        var expected = [UInt8](repeating: 0, count: layout.bytesPerBlock)
        expected.withUnsafeMutableBytes { KeyPayload.fill($0, key: keys[1]) }
        #expect(mem.withBlock(3) { Array($0) } == expected)
    }

    @Test func badCallsLeaveStateUnchanged() throws {
        let mem = try HostDeviceMemory(layout: layout, capacityBlocks: 4)
        var cfg = TierConfig(layout: layout, hostBlocks: 2)
        cfg.lockHostMemory = false
        let tiers = try KVTierManager(config: cfg, device: mem)
        tiers.noteStored(block: -1, key: testKey(1))
        tiers.noteStored(block: 99, key: testKey(1))
        tiers.willEvict(block: 99, key: testKey(1))
        #expect(tiers.location(of: testKey(1)) == nil)
        let plan = TierLookup(deviceBlocks: 0, locations: [.host], limitedByAdmission: false)
        #expect(throws: TierError.self) { _ = try tiers.load(plan, keys: [], into: [0]) }
        #expect(throws: TierError.self) { _ = try tiers.load(plan, keys: [testKey(1)], into: [0, 1]) }
        try tiers.validate()
        let other = try KVGeometry(layers: 1, kvHeads: 1, headDim: 4, dtype: .fp8, blockTokens: 4)
        #expect(throws: TierError.self) { _ = try KVTierManager(config: TierConfig(layout: other, hostBlocks: 1), device: mem) }
        var bad = cfg
        bad.writePolicy = .writeAfterHits(0)
        #expect(throws: TierError.self) { _ = try KVTierManager(config: bad, device: mem) }
    }
}
