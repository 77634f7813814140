#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import KVTestSupport
import Testing
import KVCache
import KVPlan
@testable import KVTiers

/// The warnings a store or check printed, collected instead of going to stderr.
final class WarningLog: Sendable {
    private let lines = Mutex<[String]>([])
    var all: [String] { lines.withLock { $0 } }
    var sink: @Sendable (String) -> Void { { line in self.lines.withLock { $0.append(line) } } }
    func count(containing text: String) -> Int { all.count { $0.contains(text) } }
}

/// Disk tier directories that a user, a crash or another program left in a state the store did not
/// write: each opens what it can, skips the rest with one warning naming it, and never traps, blocks,
/// allocates by a size read from disk, or deletes what it does not own.
@Suite("Disk tier on hostile directories")
struct DiskHostileInputTests {
    let layout = smallLayout

    func config(_ dir: String, _ log: WarningLog, layout: KVGeometry? = nil, capacityBlocks: Int? = nil) -> DiskStoreConfig {
        var c = DiskStoreConfig(directory: dir, capacityBytes: 1 << 30, capacityBlocks: capacityBlocks, layout: layout ?? self.layout)
        c.warn = log.sink
        return c
    }

    func put(_ store: DiskBlockStore, _ key: BlockKey) -> DiskPutOutcome {
        expectedBytes(for: key, layout: layout).withUnsafeBytes { store.put(key, bytes: $0) }
    }

    func served(_ store: DiskBlockStore, _ key: BlockKey) -> Bool {
        var out = [UInt8](repeating: 0, count: layout.bytesPerBlock)
        return out.withUnsafeMutableBytes { store.read(key, into: $0) } == .hit && out == expectedBytes(for: key, layout: layout)
    }

    /// A directory with blocks 0..<n written and the store closed.
    func populated(_ dir: String, blocks n: Int) throws {
        let store = try DiskBlockStore(config(dir, WarningLog()))
        for i in 0 ..< n { #expect(put(store, testKey(i)) == .stored) }
        store.close()
    }

    func touch(_ path: String, size: Int = 0) {
        let fd = open(path, O_WRONLY | O_CREAT, 0o600)
        precondition(fd >= 0)
        if size > 0 { precondition(ftruncate(fd, off_t(size)) == 0) }
        close(fd)
    }

    /// Every refusal `put` and `read` return names the file or, with no file involved, the directory.
    @Test func putAndReadErrorsNameTheirFile() throws {
        let dir = TempDirectory()
        let store = try DiskBlockStore(config(dir.path, WarningLog()))
        #expect(put(store, testKey(0)) == .stored)
        func message(_ outcome: DiskPutOutcome) -> String? {
            if case .notStored(let e) = outcome { return e.description } else { return nil }
        }
        let odd = [UInt8](repeating: 0, count: layout.bytesPerBlock + 2)
        let tooLarge = message(odd.withUnsafeBytes { store.put(testKey(1), bytes: $0) })
        #expect(tooLarge?.contains(dir.path) == true)
        // A flipped payload byte: the miss names the segment and the offset.
        let segment = dir.path + "/" + DiskBlockStore.segmentName(1)
        flipByte(segment, at: DiskRecordFormat.headerSize + 3)
        var out = [UInt8](repeating: 0, count: layout.bytesPerBlock)
        let read = out.withUnsafeMutableBytes { store.read(testKey(0), into: $0) }
        guard case .corrupt(let why) = read else { Issue.record("a damaged record was served: \(read)"); return }
        #expect(why.hasPrefix("\(segment) at offset 0: "))
        store.close()
        #expect(message(put(store, testKey(2)))?.contains(dir.path) == true)
        // A store too small for one record.
        let tinyDir = TempDirectory()
        var tiny = config(tinyDir.path, WarningLog())
        tiny.capacityBytes = 16
        let small = try DiskBlockStore(tiny)
        #expect(message(put(small, testKey(3)))?.contains(tiny.directory) == true)
        small.close()
    }

    @Test func emptySegmentWithTheLargestIDIsSkipped() throws {
        let dir = TempDirectory()
        try populated(dir.path, blocks: 3)
        let odd = dir.path + "/seg-ffffffffffffffff.kvlog"
        touch(odd)
        let log = WarningLog()
        let store = try DiskBlockStore(config(dir.path, log))
        #expect(log.count(containing: odd) == 1)
        for i in 0 ..< 3 { #expect(served(store, testKey(i))) }
        #expect(put(store, testKey(3)) == .stored)
        #expect(served(store, testKey(3)))
        try store.validate()
        #expect(fileSize(odd) == 0)
    }

    @Test func oddlyNamedSegmentsAreSkippedAndKept() throws {
        let dir = TempDirectory()
        try populated(dir.path, blocks: 3)
        let upper = dir.path + "/seg-00000000000000AB.kvlog"
        let signed = dir.path + "/seg-+000000000000001.kvlog"
        touch(upper, size: 100)
        touch(signed, size: 100)
        let log = WarningLog()
        let store = try DiskBlockStore(config(dir.path, log))
        #expect(log.count(containing: upper) == 1 && log.count(containing: signed) == 1)
        for i in 0 ..< 3 { #expect(served(store, testKey(i))) }
        #expect(fileSize(upper) == 100 && fileSize(signed) == 100)
    }

    @Test func unreadableSegmentIsSkippedAndItsIDNotReused() throws {
        let dir = TempDirectory()
        try populated(dir.path, blocks: 3)
        let dangling = dir.path + "/seg-0000000000000005.kvlog"
        #expect(symlink("/nonexistent/kvtiers-test", dangling) == 0)
        let log = WarningLog()
        let store = try DiskBlockStore(config(dir.path, log))
        #expect(log.count(containing: dangling) == 1)
        for i in 0 ..< 3 { #expect(served(store, testKey(i))) }
        #expect(put(store, testKey(3)) == .stored)   // a new segment after the skipped id
        #expect(fileSize(dir.path + "/seg-0000000000000006.kvlog") > 0)
    }

    @Test func fifoAndDirectoryNamedLikeSegmentsNeverBlock() throws {
        let dir = TempDirectory()
        try populated(dir.path, blocks: 3)
        let fifo = dir.path + "/seg-0000000000000003.kvlog"
        let folder = dir.path + "/seg-0000000000000004.kvlog"
        #expect(mkfifo(fifo, 0o600) == 0)
        #expect(mkdir(folder, 0o700) == 0)
        let log = WarningLog()
        let store = try DiskBlockStore(config(dir.path, log))
        #expect(log.count(containing: fifo) == 1 && log.count(containing: folder) == 1)
        for i in 0 ..< 3 { #expect(served(store, testKey(i))) }
        store.close()
        let fsckLog = WarningLog()
        let report = try DiskStoreCheck.run(directory: dir.path, repair: true, warn: fsckLog.sink)
        #expect(report.skipped == 2 && report.ok == 3 && report.corrupt == 0)
        #expect(fsckLog.count(containing: fifo) == 1)
    }

    @Test func segmentLargerThanAnyTheStoreWritesIsNeitherReadNorDeleted() throws {
        let dir = TempDirectory()
        try populated(dir.path, blocks: 3)
        let huge = dir.path + "/seg-0000000000000009.kvlog"
        let size = DiskBlockStore.maxSegmentBytes(maxRaw: layout.bytesPerBlock) + 1
        touch(huge, size: size)   // sparse
        let log = WarningLog()
        let store = try DiskBlockStore(config(dir.path, log))
        #expect(log.count(containing: huge) == 1)
        #expect(fileSize(huge) == size)
        for i in 0 ..< 3 { #expect(served(store, testKey(i))) }
        #expect(store.statistics.droppedOnOpen == 0)
    }

    /// A record whose header checksum holds but whose lengths claim gigabytes is garbage, not an
    /// allocation: the scan resynchronizes at the next valid record.
    @Test func headerClaimingGigabytesIsDroppedAsGarbage() throws {
        let dir = TempDirectory()
        try populated(dir.path, blocks: 2)
        let seg = segmentFiles(dir.path)[0]
        var header = [UInt8](repeating: 0, count: DiskRecordFormat.headerSize)
        let payload: [UInt8] = [1, 2, 3, 4]
        header.withUnsafeMutableBytes { h in
            payload.withUnsafeBytes { DiskRecordFormat.writeHeader(into: h, mode: .raw, key: testKey(77), rawLength: 4, payload: $0) }
            h.storeBytes(of: UInt32(0xFFFF_FF00).littleEndian, toByteOffset: 40, as: UInt32.self)
            h.storeBytes(of: UInt32(0xFFFF_FF00).littleEndian, toByteOffset: 44, as: UInt32.self)
            let sum = DiskRecordFormat.checksum(UnsafeRawBufferPointer(rebasing: h[0 ..< 56]))
            h.storeBytes(of: sum.littleEndian, toByteOffset: 56, as: UInt64.self)
        }
        let fd = open(seg, O_WRONLY | O_APPEND)
        _ = header.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        #expect(try DiskStoreCheck.run(directory: dir.path, repair: false, maxBlockBytes: Int(UInt32.max / 2)).corrupt == 1)
        let log = WarningLog()
        let store = try DiskBlockStore(config(dir.path, log))
        #expect(store.statistics.droppedOnOpen == 1)
        #expect(log.count(containing: "1 torn or corrupt records") == 1)
        #expect(!store.contains(testKey(77)))
        for i in 0 ..< 2 { #expect(served(store, testKey(i))) }
    }

    @Test func anotherBlockSizeIsRefusedNotWiped() throws {
        let dir = TempDirectory()
        try populated(dir.path, blocks: 5)
        let larger = try KVGeometry(layers: 4, kvHeads: 2, headDim: 16, dtype: .fp16, blockTokens: 8)
        let smaller = try KVGeometry(layers: 1, kvHeads: 2, headDim: 16, dtype: .fp16, blockTokens: 8)
        for other in [larger, smaller] {
            #expect {
                _ = try DiskBlockStore(config(dir.path, WarningLog(), layout: other))
            } throws: { error in
                guard case .invalidArgument(let m) = error as? TierError else { return false }
                return m.contains(dir.path) && m.contains("\(layout.bytesPerBlock)")
            }
        }
        let store = try DiskBlockStore(config(dir.path, WarningLog()))
        #expect(store.count == 5)
        for i in 0 ..< 5 { #expect(served(store, testKey(i))) }
    }

    /// A directory written before the format file existed: a smaller block size would drop every record
    /// as damaged, so it is refused too; the same block size opens it and records the format.
    @Test func directoryWithoutFormatFileIsCheckedByItsRecords() throws {
        let dir = TempDirectory()
        try populated(dir.path, blocks: 4)
        #expect(unlink(dir.path + "/FORMAT") == 0)
        let smaller = try KVGeometry(layers: 1, kvHeads: 2, headDim: 16, dtype: .fp16, blockTokens: 8)
        #expect(throws: TierError.self) { _ = try DiskBlockStore(config(dir.path, WarningLog(), layout: smaller)) }
        let store = try DiskBlockStore(config(dir.path, WarningLog()))
        #expect(store.count == 4)
        #expect(fileSize(dir.path + "/FORMAT") > 0)
    }

    @Test func aFileIsNotADirectory() throws {
        let dir = TempDirectory()
        let file = dir.path + "/plain"
        touch(file, size: 10)
        #expect {
            _ = try DiskBlockStore(config(file, WarningLog()))
        } throws: { error in
            guard case .invalidArgument(let m) = error as? TierError else { return false }
            return m.contains(file)
        }
        #expect(throws: TierError.invalidArgument("\(file) is not a directory")) {
            _ = try DiskStoreCheck.run(directory: file, repair: true)
        }
        #expect(fileSize(file) == 10)
    }

    @Test func foreignFilesAreKept() throws {
        let dir = TempDirectory()
        try populated(dir.path, blocks: 2)
        touch(dir.path + "/notes.tmp", size: 7)
        touch(dir.path + "/README", size: 5)
        let log = WarningLog()
        let store = try DiskBlockStore(config(dir.path, log))
        #expect(fileSize(dir.path + "/notes.tmp") == 7 && fileSize(dir.path + "/README") == 5)
        #expect(log.count(containing: dir.path + "/notes.tmp") == 1 && log.count(containing: dir.path + "/README") == 1)
        #expect(store.count == 2)
    }

    /// A disk that fills below the tier's capacity (ENOSPC from the I/O wrapper; deleting a file gives
    /// its room back): the store evicts its oldest segments to make room, counts them, warns once, and
    /// keeps storing and serving the newest blocks.
    @Test func fullDiskEvictsToMakeRoomAndReportsIt() throws {
        #if DEBUG
        let dir = TempDirectory()
        let log = WarningLog()
        let faults = IOFaultInjector()
        var c = config(dir.path, log, capacityBlocks: 64)   // 8 blocks per segment
        c.faults = faults
        let store = try DiskBlockStore(c)
        let room = 20 * (DiskRecordFormat.headerSize + layout.bytesPerBlock)
        faults.limitDisk(freeBytes: room)
        for i in 0 ..< 60 { #expect(put(store, testKey(i)) == .stored) }
        let s = store.statistics
        #expect(s.fullDiskEvictedSegments > 0)
        #expect(s.notStored == 0 && s.writeErrors == 0)
        #expect(faults.injectedCount > 0)
        #expect(log.count(containing: "disk is full") == 1)
        #expect(segmentFiles(dir.path).reduce(0) { $0 + fileSize($1) } <= room)
        for i in 55 ..< 60 { #expect(served(store, testKey(i))) }
        try store.validate()
        #expect(!store.contains(testKey(0)))
        #else
        // Fault injection exists in debug builds only.
        #endif
    }
}
