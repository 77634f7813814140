#if canImport(Glibc)
import Glibc
#endif
import Testing
import KVCache
import KVTestSupport
@testable import KVTiers

@Suite("Disk tier")
struct DiskBlockStoreTests {
    let layout = smallLayout

    func config(_ dir: String, capacityBlocks: Int? = nil, capacityBytes: Int = 1 << 30) -> DiskStoreConfig {
        DiskStoreConfig(directory: dir, capacityBytes: capacityBytes, capacityBlocks: capacityBlocks, layout: layout)
    }

    func put(_ store: DiskBlockStore, _ key: BlockKey) -> DiskPutOutcome {
        expectedBytes(for: key, layout: layout).withUnsafeBytes { store.put(key, bytes: $0) }
    }

    func read(_ store: DiskBlockStore, _ key: BlockKey) -> (DiskReadOutcome, [UInt8]) {
        var out = [UInt8](repeating: 0, count: layout.bytesPerBlock)
        let r = out.withUnsafeMutableBytes { store.read(key, into: $0) }
        return (r, out)
    }

    /// Model-based: seeded random puts, reads and reopens against a model of which keys may be present.
    /// Invariants after every step: a hit returns exactly the bytes stored under the key; a key just stored
    /// is present; only stored keys are present; the store never exceeds its capacity; reopening keeps
    /// every block; FIFO eviction keeps the newest puts.
    @Test(arguments: [UInt64(11), 12, 13])
    func modelBased(seed: UInt64) throws {
        let dir = TempDirectory()
        var rng = SplitMix64(seed: seed)
        let capacity = 24
        var cfg = config(dir.path, capacityBlocks: capacity)
        cfg.secondChance = false   // pure FIFO: the newest puts are exactly predictable
        var store: DiskBlockStore? = try DiskBlockStore(cfg)
        var everStored = Set<BlockKey>()
        var evictions = 0
        var recent: [BlockKey] = []   // keys stored by `.stored`, newest last
        for step in 0 ..< 400 {
            let key = testKey(Int(rng.next() % 64), salt: seed)
            switch rng.next() % 9 {
            case 0 ..< 4:
                let r = put(store!, key)
                #expect(r == .stored || r == .alreadyStored, "step \(step)")
                #expect(store!.contains(key))
                everStored.insert(key)
                if r == .stored { recent.append(key) }
            case 4 ..< 8:
                let (r, bytes) = read(store!, key)
                if r == .hit {
                    #expect(everStored.contains(key))
                    #expect(bytes == expectedBytes(for: key, layout: layout), "step \(step): wrong bytes served")
                } else {
                    #expect(r == .miss, "step \(step): \(r)")
                }
            default:
                let before = Set(store!.keys())
                evictions += store!.statistics.evictedSegments
                store = nil   // close
                store = try DiskBlockStore(cfg)
                #expect(before == Set(store!.keys()))
                #expect(store!.statistics.droppedOnOpen == 0)
            }
            #expect(store!.count <= capacity)
            try store!.validate()
            // Segments hold capacity/8 blocks, so the newest capacity*7/8 puts are always present.
            for k in recent.suffix(capacity * 7 / 8) { #expect(store!.contains(k), "step \(step)") }
            #expect(Set(store!.keys()).isSubset(of: everStored))
        }
        #expect(evictions + store!.statistics.evictedSegments > 0)
    }

    /// Blocks read since they were written survive the eviction of their segment; the others go.
    @Test func secondChanceKeepsBlocksThatWereRead() throws {
        let dir = TempDirectory()
        let store = try DiskBlockStore(config(dir.path, capacityBlocks: 16))   // segments of 2 blocks
        for i in 0 ..< 16 { #expect(put(store, testKey(i)) == .stored) }
        #expect(read(store, testKey(0)).0 == .hit)      // referenced; testKey(1) is not
        for i in 16 ..< 18 { #expect(put(store, testKey(i)) == .stored) }
        #expect(store.contains(testKey(0)))
        #expect(!store.contains(testKey(1)))
        #expect(read(store, testKey(0)) == (.hit, expectedBytes(for: testKey(0), layout: layout)))
        #expect(store.statistics.reinsertedBlocks == 1)
        #expect(store.count <= 16)
        // The moved record survives a restart too, and nothing on disk is damaged.
        store.close()
        let reopened = try DiskBlockStore(config(dir.path, capacityBlocks: 16))
        #expect(read(reopened, testKey(0)).0 == .hit)
        #expect(reopened.statistics.droppedOnOpen == 0)
    }

    @Test func filesArePrivate() throws {
        let dir = TempDirectory()
        let store = try DiskBlockStore(config(dir.path))
        #expect(put(store, testKey(1)) == .stored)
        store.close()
        for f in segmentFiles(dir.path) { #expect(try SystemIO().mode(f) == 0o600) }
        #expect(try SystemIO().mode(dir.path) & 0o077 == 0)
    }

    @Test func secondOpenerIsRefused() throws {
        let dir = TempDirectory()
        let store = try DiskBlockStore(config(dir.path))
        #expect(throws: TierError.locked(dir.path)) { _ = try DiskBlockStore(config(dir.path)) }
        _ = store
    }

    @Test func flippedByteIsAMissWhileOpenAndAfterRestart() throws {
        let dir = TempDirectory()
        let keys = (0 ..< 3).map { testKey($0, salt: 99) }
        do {
            let store = try DiskBlockStore(config(dir.path))
            for k in keys { #expect(put(store, k) == .stored) }
            let seg = segmentFiles(dir.path)[0]
            let offsets = recordOffsets(seg)
            #expect(offsets.count == 3)
            // Flip a payload byte of the second record while the store is open.
            flipByte(seg, at: offsets[1] + DiskRecordFormat.headerSize + 5)
            if case .corrupt = read(store, keys[1]).0 {} else { Issue.record("flipped byte not detected") }
            #expect(read(store, keys[1]).0 == .miss)
            #expect(read(store, keys[0]).0 == .hit)
            #expect(store.statistics.corruptReads == 1)
            // Flip a header byte of the third record.
            flipByte(seg, at: offsets[2] + 9)
        }
        let reopened = try DiskBlockStore(config(dir.path))
        #expect(reopened.statistics.droppedOnOpen == 2)
        #expect(read(reopened, keys[0]) == (.hit, expectedBytes(for: keys[0], layout: layout)))
        #expect(read(reopened, keys[1]).0 == .miss)
        #expect(read(reopened, keys[2]).0 == .miss)
    }

    @Test func tornRecordIsDroppedOnRestart() throws {
        let dir = TempDirectory()
        let keys = (0 ..< 3).map { testKey($0, salt: 7) }
        do {
            let store = try DiskBlockStore(config(dir.path))
            for k in keys { #expect(put(store, k) == .stored) }
        }
        let seg = segmentFiles(dir.path)[0]
        let size = fileSize(seg)
        #expect(truncate(seg, off_t(size - 10)) == 0)      // cut the last record mid-payload
        var report = try DiskStoreCheck.run(directory: dir.path, repair: false)
        #expect(report.ok == 2 && report.corrupt == 1 && report.blocks == 3 && report.dropped == 0)
        let store = try DiskBlockStore(config(dir.path))
        #expect(store.count == 2)
        #expect(store.statistics.droppedOnOpen == 1)
        #expect(read(store, keys[2]).0 == .miss)
        #expect(read(store, keys[1]) == (.hit, expectedBytes(for: keys[1], layout: layout)))
        // The store appends to a new segment; writing after the repair works.
        #expect(put(store, keys[2]) == .stored)
        store.close()
        _ = consume store
        report = try DiskStoreCheck.run(directory: dir.path, repair: true)
        #expect(report.corrupt == 0 && report.ok == 3)
    }

    @Test func fsckDropsDamageAndASecondRunIsClean() throws {
        let dir = TempDirectory()
        var config = config(dir.path)
        config.repairOnOpen = false
        do {
            let store = try DiskBlockStore(config)
            for i in 0 ..< 5 { #expect(put(store, testKey(i)) == .stored) }
        }
        let seg = segmentFiles(dir.path)[0]
        flipByte(seg, at: fileSize(seg) / 2)
        let first = try DiskStoreCheck.run(directory: dir.path, repair: true)
        #expect(first.corrupt >= 1 && first.dropped == first.corrupt && first.ok == 4)
        let second = try DiskStoreCheck.run(directory: dir.path, repair: true)
        #expect(second.corrupt == 0 && second.dropped == 0 && second.ok == 4 && second.blocks == 4)
    }

    /// A disk that fills up: writes fail with ENOSPC (injected in the I/O wrapper), the store answers
    /// "not stored" and counts it, keeps serving what it has, leaves no partial record, and stores again
    /// once there is room.
    @Test func fullDiskMeansNotStored() throws {
        #if DEBUG
        let dir = TempDirectory()
        let faults = IOFaultInjector()
        var config = config(dir.path)
        config.faults = faults
        let store = try DiskBlockStore(config)
        for i in 0 ..< 3 { #expect(put(store, testKey(i)) == .stored) }
        faults.failWrites(afterBytes: 0, errno: ENOSPC)
        let segment = dir.path + "/" + DiskBlockStore.segmentName(1)
        for i in 3 ..< 6 {
            #expect(put(store, testKey(i)) == .notStored(.system(call: "pwrite \(segment)", errno: ENOSPC)))
            #expect(!store.contains(testKey(i)))
        }
        #expect(store.statistics.notStored == 3)
        #expect(store.statistics.writeErrors == 3)
        for i in 0 ..< 3 { #expect(read(store, testKey(i)) == (.hit, expectedBytes(for: testKey(i), layout: layout))) }
        faults.failWrites(afterBytes: 0, errno: EIO)
        #expect(put(store, testKey(6)) == .notStored(.system(call: "pwrite \(segment)", errno: EIO)))
        faults.heal()
        #expect(put(store, testKey(7)) == .stored)
        #expect(read(store, testKey(7)).0 == .hit)
        store.close()
        let report = try DiskStoreCheck.run(directory: dir.path, repair: false)
        #expect(report.corrupt == 0 && report.ok == 4)
        #else
        // Fault injection exists in debug builds only.
        #endif
    }

    @Test func capacityInBytesEvictsOldestSegments() throws {
        let dir = TempDirectory()
        let store = try DiskBlockStore(config(dir.path, capacityBytes: 40_000))
        for i in 0 ..< 100 { _ = put(store, testKey(i)) }
        let s = store.statistics
        #expect(s.bytesOnDisk <= 40_000)
        #expect(s.evictedBlocks > 0 && s.blocks == store.count)
        #expect(read(store, testKey(99)).0 == .hit)
        #expect(read(store, testKey(0)).0 == .miss)
        var changes: [DiskChange] = []
        store.drainChanges(into: &changes)
        #expect(changes.count { if case .removed = $0 { true } else { false } } == s.evictedBlocks)
        #expect(changes.count == s.evictedBlocks)   // stores are not journaled unless asked
        let onDisk = segmentFiles(dir.path).reduce(0) { $0 + fileSize($1) }
        #expect(onDisk <= 40_000)
    }
}
