#if canImport(Glibc)
import Glibc
#endif
import KVCache
import KVPlan

/// Configuration of the L3 disk tier.
public struct DiskStoreConfig: Sendable {
    /// The directory that holds the segment files (created with mode 0700; files are 0600).
    public var directory: String
    /// The most bytes the segments may hold together; the oldest segment is evicted beyond it.
    public var capacityBytes: Int
    /// The most live blocks (optional), for callers that size the tier in blocks.
    public var capacityBlocks: Int?
    /// The largest block (decoded) the store accepts; also sizes the codec's buffers.
    public var maxBlockBytes: Int
    /// Bytes per element of the blocks (2: fp16/bf16, byte-plane codec; 1: fp8, plain zstd).
    public var elementSize: Int
    /// Compress blocks (the KV byte-plane codec); false stores them raw.
    public var compress: Bool = true
    /// `fsync` every record (durable on power loss) instead of only when a segment is sealed or the store
    /// closes. Crash safety against torn writes does not depend on it: checksums do that.
    public var syncEveryWrite: Bool = false
    /// Physically drop torn and corrupt records found when opening (rewriting the damaged segments).
    public var repairOnOpen: Bool = true
    /// Give blocks read since they were written a second chance when their segment is evicted.
    public var secondChance: Bool = true
    #if DEBUG
    /// Debug builds only: fault injection for the I/O wrapper.
    public var faults: IOFaultInjector?
    #endif

    public init(directory: String, capacityBytes: Int, capacityBlocks: Int? = nil, maxBlockBytes: Int, elementSize: Int = 2) {
        self.directory = directory
        self.capacityBytes = capacityBytes
        self.capacityBlocks = capacityBlocks
        self.maxBlockBytes = maxBlockBytes
        self.elementSize = elementSize
    }

    /// A store for blocks of `layout`.
    public init(directory: String, capacityBytes: Int, capacityBlocks: Int? = nil, layout: KVGeometry) {
        // fp32 is coded as two 16-bit words per element, like `KVByteCodec(layout:)`.
        self.init(directory: directory, capacityBytes: capacityBytes, capacityBlocks: capacityBlocks,
                  maxBlockBytes: layout.bytesPerBlock, elementSize: min(layout.dtype.size, 2))
    }

    /// The most bytes one record of a `blockBytes`-byte block takes on disk: header plus worst-case encoding.
    public static func maxRecordBytes(blockBytes: Int) -> Int {
        DiskRecordFormat.headerSize + KVByteCodec.maxEncodedSize(rawBytes: blockBytes)
    }
}

/// What `DiskBlockStore.put` did.
public enum DiskPutOutcome: Equatable, Sendable {
    case stored
    case alreadyStored
    /// Not stored (full disk, I/O error, block larger than the tier): counted in stats, nothing lost
    /// elsewhere, no partial record ever served.
    case notStored(TierError)
}

/// One change of the disk tier's contents, as `DiskBlockStore.drainChanges` reports it.
public enum DiskChange: Equatable, Sendable {
    /// A block was written, with the parent key its record names.
    case stored(BlockKey, parent: BlockKey?)
    /// A block left the store (its segment was evicted, or its record failed a check).
    case removed(BlockKey)
}

/// What `DiskBlockStore.read` found.
public enum DiskReadOutcome: Equatable, Sendable {
    case hit
    case miss
    /// The record failed a check (checksum, key, size, codec): it was dropped and counts as a miss.
    case corrupt(String)
}

/// Counters of the disk tier.
public struct DiskStoreStats: Sendable, Equatable {
    public var blocks = 0
    public var bytesOnDisk = 0
    public var capacityBytes = 0
    public var segments = 0
    public var writes = 0
    public var bytesWritten = 0
    public var rawBytesWritten = 0
    public var storedRaw = 0
    public var notStored = 0
    public var writeErrors = 0
    public var reads = 0
    public var hits = 0
    public var misses = 0
    public var corruptReads = 0
    public var readErrors = 0
    public var evictedSegments = 0
    public var evictedBlocks = 0
    /// Blocks read since written that survived their segment's eviction (second chance).
    public var reinsertedBlocks = 0
    /// Torn or corrupt records found (and not served) when the store was opened.
    public var droppedOnOpen = 0
}

/// The L3 tier: blocks compressed with the KV byte-plane codec in append-only, checksummed log segments.
///
/// - Crash safety: records are appended to the active segment; a record is only indexed after its write
///   returned. After a crash the index is rebuilt by scanning every segment: a record counts only when its
///   header and payload checksums hold, so torn or corrupt records are never served. A read checks the
///   payload checksum and the key again, so a byte flipped later is a miss, not bad data.
/// - Capacity: `capacityBytes` (and optionally `capacityBlocks`); when full, the oldest segment is deleted
///   with its blocks (FIFO by segment, as log-structured flash caches do).
/// - Failures: a full disk or an I/O error makes `put` return `.notStored` and bumps a counter; the partial
///   write is truncated away (or its segment sealed), never indexed.
/// - Concurrency: thread-safe. Encoding/decoding and reads run outside the lock (one codec per concurrent
///   caller from a small pool), appends are serialized.
/// - Exclusivity: the directory is locked (`flock` on `LOCK`) while the store is open.
public final class DiskBlockStore: @unchecked Sendable {
    // Sendable: all mutable state is behind `lock`; segments' descriptors are immutable and reference counted.
    public let config: DiskStoreConfig
    let io: SystemIO
    private let lock = ConditionLock()
    private let lockFD: Int32
    private let segmentLimit: Int
    private let segmentBlockLimit: Int
    private var index: [BlockKey: Location] = [:]
    private var segments: [Segment] = []       // oldest first; the last one may be active
    private var active: Segment?
    private var nextSegmentID: UInt64 = 1
    private var stats = DiskStoreStats()
    /// Blocks stored (only once `journalStores()` was called) and removed since the last drain, in the
    /// order they happened under `lock`.
    private var changes: [DiskChange] = []
    private var journalingStores = false
    private var codecs: [CodecBuffers] = []
    private var closed = false

    struct Location {
        var segment: Segment
        var offset: Int
        var length: Int
        var rawLength: Int
        /// The parent block's key as the record names it (nil: a first block, or a version 1 record).
        var parent: BlockKey?
        /// Read since it was written: gets a second chance when its segment is evicted.
        var referenced = false
    }

    final class Segment {
        let id: UInt64
        let fd: Int32
        let path: String
        let io: SystemIO
        var size: Int
        var keys: [BlockKey] = []
        var broken = false
        init(id: UInt64, fd: Int32, path: String, io: SystemIO, size: Int) {
            self.id = id
            self.fd = fd
            self.path = path
            self.io = io
            self.size = size
        }
        deinit { io.close(fd) }
    }

    /// One codec and its output buffer (header + worst-case payload), reused across calls.
    final class CodecBuffers {
        let codec: KVByteCodec
        let buffer: UnsafeMutableRawBufferPointer
        init(_ c: DiskStoreConfig) throws(TierError) {
            codec = try KVByteCodec(elementSize: c.elementSize, maxInputBytes: c.maxBlockBytes)
            buffer = .allocate(byteCount: DiskRecordFormat.headerSize + KVByteCodec.maxEncodedSize(rawBytes: c.maxBlockBytes),
                               alignment: 64)
        }
        deinit { buffer.deallocate() }
    }

    static func segmentName(_ id: UInt64) -> String {
        let hex = String(id, radix: 16)
        return "seg-" + String(repeating: "0", count: max(0, 16 - hex.count)) + hex + ".kvlog"
    }

    static func segmentID(_ name: String) -> UInt64? {
        guard name.hasPrefix("seg-"), name.hasSuffix(".kvlog"), name.count == 4 + 16 + 6 else { return nil }
        return UInt64(name.dropFirst(4).prefix(16), radix: 16)
    }

    /// Opens (or creates) the store in `config.directory`, rebuilding the index from the segments.
    /// - Throws: `.invalidArgument` for bad sizes, `.locked` when another process has the directory open,
    ///   `.system` when the directory cannot be used.
    public init(_ config: DiskStoreConfig) throws(TierError) {
        guard config.capacityBytes > 0, config.maxBlockBytes > 0, config.maxBlockBytes <= Int(UInt32.max / 2),
              config.elementSize == 1 || config.elementSize == 2, config.maxBlockBytes % config.elementSize == 0,
              (config.capacityBlocks ?? 1) > 0 else { throw .invalidArgument("bad disk store configuration") }
        self.config = config
        var io = SystemIO()
        #if DEBUG
        io.faults = config.faults
        #endif
        self.io = io
        let maxRecord = DiskRecordFormat.headerSize + KVByteCodec.maxEncodedSize(rawBytes: config.maxBlockBytes)
        segmentLimit = max(maxRecord, min(64 << 20, config.capacityBytes / 8))
        segmentBlockLimit = max(1, (config.capacityBlocks ?? Int.max) / 8)
        try io.makeDirectory(config.directory)
        let lfd = try io.open(config.directory + "/LOCK", flags: O_RDWR | O_CREAT)
        do throws(TierError) { try io.lockExclusive(lfd) } catch {
            io.close(lfd)
            if case .system(_, let e) = error, e == EWOULDBLOCK { throw .locked(config.directory) }
            throw error
        }
        lockFD = lfd
        do throws(TierError) { try rebuild() } catch { io.close(lfd); throw error }
    }

    deinit {
        close()
        io.close(lockFD)
    }

    /// Seals the active segment (fsync), stops accepting writes and releases the directory lock (reads of
    /// blocks already indexed still work). Idempotent.
    public func close() {
        lock.withLock {
            guard !closed else { return }
            closed = true
            if let a = active { try? io.fsync(a.fd) }
            active = nil
            io.unlock(lockFD)
        }
    }

    /// Deletes the segment files (and leftover temporary files) in `directory`; a missing directory is
    /// fine. Refuses (`.locked`) while a store has the directory open.
    public static func removeSegments(in directory: String) throws(TierError) {
        let io = SystemIO()
        guard let names = try? io.listDirectory(directory) else { return }
        let lockFD = try io.open(directory + "/LOCK", flags: O_RDWR | O_CREAT)
        defer { io.close(lockFD) }
        do throws(TierError) { try io.lockExclusive(lockFD) } catch {
            if case .system(_, let e) = error, e == EWOULDBLOCK { throw .locked(directory) }
            throw error
        }
        for n in names where segmentID(n) != nil || (n.hasPrefix("seg-") && n.hasSuffix(".tmp")) {
            try io.unlink(directory + "/" + n)
        }
    }

    // MARK: Rebuild

    private func rebuild() throws(TierError) {
        let names = try io.listDirectory(config.directory)
        for n in names where n.hasSuffix(".tmp") { try? io.unlink(config.directory + "/" + n) }
        let ids = names.compactMap(Self.segmentID).sorted()
        for id in ids {
            let path = config.directory + "/" + Self.segmentName(id)
            let report = try Self.checkSegment(path: path, io: io, maxRaw: config.maxBlockBytes,
                                               repair: config.repairOnOpen)
            stats.droppedOnOpen += report.corrupt
            nextSegmentID = max(nextSegmentID, id + 1)
            if report.records.isEmpty {
                try? io.unlink(path)
                continue
            }
            let fd = try io.open(path, flags: O_RDONLY)
            let seg = Segment(id: id, fd: fd, path: path, io: io, size: report.size)
            for f in report.records {
                seg.keys.append(f.header.key)
                if let old = index[f.header.key] { stats.bytesOnDisk -= old.length } else { stats.blocks += 1 }
                index[f.header.key] = Location(segment: seg, offset: f.offset, length: f.header.recordLength,
                                               rawLength: f.header.rawLength, parent: f.header.parent)
                stats.bytesOnDisk += f.header.recordLength
            }
            segments.append(seg)
        }
        stats.segments = segments.count
        stats.capacityBytes = config.capacityBytes
        evictWhileOver(incomingBytes: 0, incomingBlocks: 0)
    }

    /// The outcome of checking one segment file.
    struct SegmentCheck { var records: [DiskRecordFormat.Found]; var corrupt: Int; var size: Int; var rewritten: Bool }

    /// Scans the segment at `path`; with `repair`, rewrites it without its damaged records (write to a
    /// temporary file, fsync, rename over the original, fsync the directory), so a crash during repair
    /// leaves either the old or the new file.
    static func checkSegment(path: String, io: SystemIO, maxRaw: Int, repair: Bool) throws(TierError) -> SegmentCheck {
        let fd = try io.open(path, flags: O_RDONLY)
        defer { io.close(fd) }
        let size = try io.size(fd)
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: max(size, 1), alignment: 64)
        defer { buf.deallocate() }
        let n = try io.preadFull(fd, UnsafeMutableRawBufferPointer(rebasing: buf[0 ..< size]), at: 0)
        let bytes = UnsafeRawBufferPointer(rebasing: buf[0 ..< n])
        let scan = DiskRecordFormat.scan(bytes, maxRaw: maxRaw)
        guard repair, scan.corrupt > 0 else {
            return SegmentCheck(records: scan.records, corrupt: scan.corrupt, size: n, rewritten: false)
        }
        // Rewrite with only the good records.
        let tmp = path + ".tmp"
        let out = try io.open(tmp, flags: O_WRONLY | O_CREAT | O_TRUNC)
        var records: [DiskRecordFormat.Found] = []
        var off = 0
        do throws(TierError) {
            for r in scan.records {
                let rec = UnsafeRawBufferPointer(rebasing: bytes[r.offset ..< r.offset + r.header.recordLength])
                try io.pwriteAll(out, rec, at: off)
                records.append(.init(header: r.header, offset: off))
                off += rec.count
            }
            try io.fsync(out)
            io.close(out)
            try io.rename(tmp, path)
            let dir = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)])
            try io.syncDirectory(dir.isEmpty ? "." : dir)
        } catch {
            io.close(out)
            try? io.unlink(tmp)
            throw error
        }
        return SegmentCheck(records: records, corrupt: scan.corrupt, size: off, rewritten: true)
    }

    // MARK: Queries

    /// Whether `key` is stored. O(1).
    public func contains(_ key: BlockKey) -> Bool { lock.withLock { index[key] != nil } }

    /// The number of stored blocks.
    public var count: Int { lock.withLock { index.count } }

    /// A snapshot of the counters.
    public var statistics: DiskStoreStats { lock.withLock { stats } }

    /// Every stored key (order unspecified). O(blocks).
    public func keys() -> [BlockKey] { lock.withLock { Array(index.keys) } }

    /// The parent key stored with `key` (nil when `key` is not stored, is a first block, or was written
    /// by a version 1 store that kept no parents). O(1).
    public func parent(of key: BlockKey) -> BlockKey? { lock.withLock { index[key]?.parent } }

    /// Every stored key with its parent, oldest record first (a router replaying them sees the order
    /// they were written in). O(blocks).
    public func blocksWithParents() -> [(key: BlockKey, parent: BlockKey?)] {
        lock.withLock {
            var out: [(key: BlockKey, parent: BlockKey?)] = []
            out.reserveCapacity(index.count)
            for seg in segments {
                for k in seg.keys { if let loc = index[k], loc.segment === seg { out.append((k, loc.parent)) } }
            }
            return out
        }
    }

    /// From now on `drainChanges` also reports stored blocks (before: only removals are journaled).
    public func journalStores() { lock.withLock { journalingStores = true } }

    /// Moves the blocks stored (once `journalStores()` was called) and removed since the last call into
    /// `out`, in the order they happened: a replay of them gives exactly the blocks stored now. O(changes).
    public func drainChanges(into out: inout [DiskChange]) {
        lock.withLock {
            out.append(contentsOf: changes)
            changes.removeAll(keepingCapacity: true)
        }
    }

    // MARK: Codec pool

    private func checkoutCodec() throws(TierError) -> CodecBuffers {
        if let c = lock.withLock({ codecs.popLast() }) { return c }
        return try CodecBuffers(config)
    }

    private func checkin(_ c: CodecBuffers) { lock.withLock { codecs.append(c) } }

    // MARK: Write

    /// Stores `bytes` under `key` (compressed when it pays), with no parent recorded. O(bytes).
    @discardableResult
    public func put(_ key: BlockKey, bytes: UnsafeRawBufferPointer) -> DiskPutOutcome { put(key, parent: nil, bytes: bytes) }

    /// Stores `bytes` under `key` (compressed when it pays); the record names `parent` (nil for a first
    /// block), which `parent(of:)` returns, also after a restart. O(bytes).
    /// - Returns: `.stored`, `.alreadyStored` (the key is present: blocks with equal keys hold equal bytes),
    ///   or `.notStored` (full disk, I/O error, too large), counted in stats.
    @discardableResult
    public func put(_ key: BlockKey, parent: BlockKey?, bytes: UnsafeRawBufferPointer) -> DiskPutOutcome {
        guard bytes.count <= config.maxBlockBytes, bytes.count % config.elementSize == 0 else {
            return lock.withLock { stats.notStored += 1; return .notStored(.invalidArgument("block size \(bytes.count)")) }
        }
        if contains(key) { return .alreadyStored }
        let c: CodecBuffers
        do throws(TierError) { c = try checkoutCodec() } catch {
            return lock.withLock { stats.notStored += 1; return .notStored(error) }
        }
        defer { checkin(c) }
        let H = DiskRecordFormat.headerSize
        let payloadArea = UnsafeMutableRawBufferPointer(rebasing: c.buffer[H...])
        var mode = KVCodecMode.raw
        var stored = bytes.count
        if config.compress {
            do throws(TierError) { (mode, stored) = try c.codec.encode(bytes, into: payloadArea) }
            catch { mode = .raw; stored = bytes.count }
        }
        if mode == .raw, stored > 0 { payloadArea.baseAddress!.copyMemory(from: bytes.baseAddress!, byteCount: stored) }
        let payload = UnsafeRawBufferPointer(rebasing: c.buffer[H ..< H + stored])
        DiskRecordFormat.writeHeader(into: c.buffer, mode: mode, key: key, parent: parent, rawLength: bytes.count, payload: payload)
        let record = UnsafeRawBufferPointer(rebasing: c.buffer[0 ..< H + stored])
        return lock.withLock { () -> DiskPutOutcome in append(record, key: key, parent: parent, rawLength: bytes.count, mode: mode) }
    }

    /// Appends one encoded record; the lock is held.
    private func append(_ record: UnsafeRawBufferPointer, key: BlockKey, parent: BlockKey?, rawLength: Int, mode: KVCodecMode) -> DiskPutOutcome {
        guard !closed else { stats.notStored += 1; return .notStored(.invalidArgument("store is closed")) }
        if index[key] != nil { return .alreadyStored }
        guard record.count <= config.capacityBytes else { stats.notStored += 1; return .notStored(.full) }
        evictWhileOver(incomingBytes: record.count, incomingBlocks: 1)
        let seg: Segment
        do throws(TierError) { seg = try activeSegment(for: record.count) } catch {
            stats.notStored += 1
            stats.writeErrors += 1
            return .notStored(error)
        }
        let offset = seg.size
        do throws(TierError) {
            try io.pwriteAll(seg.fd, record, at: offset)
            if config.syncEveryWrite { try io.fsync(seg.fd) }
        } catch {
            stats.notStored += 1
            stats.writeErrors += 1
            // Cut the partial record away; if even that fails, seal the segment so nothing follows it.
            // (A torn record left behind is never indexed, and a rebuild skips it by checksum.)
            if (try? io.truncate(seg.fd, to: offset)) == nil { seg.broken = true; active = nil }
            return .notStored(error)
        }
        seg.size += record.count
        seg.keys.append(key)
        index[key] = Location(segment: seg, offset: offset, length: record.count, rawLength: rawLength, parent: parent)
        if journalingStores { changes.append(.stored(key, parent: parent)) }
        stats.blocks += 1
        stats.bytesOnDisk += record.count
        stats.writes += 1
        stats.bytesWritten += record.count
        stats.rawBytesWritten += rawLength
        if mode == .raw { stats.storedRaw += 1 }
        return .stored
    }

    /// The segment to append `bytes` to, sealing the active one and starting another when it is full.
    private func activeSegment(for bytes: Int) throws(TierError) -> Segment {
        if let a = active, !a.broken, a.size == 0 || (a.size + bytes <= segmentLimit && a.keys.count < segmentBlockLimit) {
            return a
        }
        if let a = active { try? io.fsync(a.fd); active = nil }
        let id = nextSegmentID
        let path = config.directory + "/" + Self.segmentName(id)
        let fd = try io.open(path, flags: O_RDWR | O_CREAT | O_EXCL, mode: 0o600)
        nextSegmentID += 1
        try? io.syncDirectory(config.directory)
        let seg = Segment(id: id, fd: fd, path: path, io: io, size: 0)
        segments.append(seg)
        stats.segments = segments.count
        active = seg
        return seg
    }

    /// Deletes the oldest segments until `incoming` more fits. The lock is held. O(blocks in them).
    ///
    /// Second chance: blocks of the victim that were read since they were written are copied to the head
    /// of the log (record bytes as they are, checksums still valid) instead of being dropped, at most half
    /// of the victim's blocks, so each eviction still frees room. Blocks that are not read again age out
    /// on the next pass (a CLOCK approximation of LRU over a FIFO log).
    private func evictWhileOver(incomingBytes: Int, incomingBlocks: Int) {
        let maxBlocks = config.capacityBlocks ?? Int.max
        while !segments.isEmpty,
              stats.bytesOnDisk + incomingBytes > config.capacityBytes || index.count + incomingBlocks > maxBlocks {
            let victim = segments.removeFirst()
            if victim === active { active = nil }
            var live: [(BlockKey, Location)] = []
            for k in victim.keys { if let loc = index[k], loc.segment === victim { live.append((k, loc)) } }
            var keep = config.secondChance ? live.filter(\.1.referenced) : []
            if keep.count > live.count / 2 { keep.removeLast(keep.count - live.count / 2) }
            let kept = Set(keep.map(\.0))
            for (k, loc) in live {
                index[k] = nil
                stats.blocks -= 1
                stats.bytesOnDisk -= loc.length
                if !kept.contains(k) { stats.evictedBlocks += 1; changes.append(.removed(k)) }
            }
            for (k, loc) in keep where !reinsert(k, from: loc) { stats.evictedBlocks += 1; changes.append(.removed(k)) }
            try? io.unlink(victim.path)
            stats.evictedSegments += 1
            stats.segments = segments.count
        }
    }

    /// Copies one record's bytes from its (evicted) segment to the active one. The lock is held.
    private func reinsert(_ key: BlockKey, from loc: Location) -> Bool {
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: loc.length, alignment: 16)
        defer { buf.deallocate() }
        guard let n = try? io.preadFull(loc.segment.fd, buf, at: loc.offset), n == loc.length,
              let seg = try? activeSegment(for: loc.length) else { return false }
        let offset = seg.size
        guard (try? io.pwriteAll(seg.fd, UnsafeRawBufferPointer(buf), at: offset)) != nil else {
            if (try? io.truncate(seg.fd, to: offset)) == nil { seg.broken = true; active = nil }
            return false
        }
        seg.size += loc.length
        seg.keys.append(key)
        index[key] = Location(segment: seg, offset: offset, length: loc.length, rawLength: loc.rawLength, parent: loc.parent)
        stats.blocks += 1
        stats.bytesOnDisk += loc.length
        stats.reinsertedBlocks += 1
        return true
    }

    // MARK: Read

    /// Reads the block `key` into `dst` (which must be exactly the block's size), verifying the checksums
    /// and the key first. O(bytes). A failed check drops the record and returns `.corrupt` (a miss).
    public func read(_ key: BlockKey, into dst: UnsafeMutableRawBufferPointer) -> DiskReadOutcome {
        let found: Location? = lock.withLock {
            stats.reads += 1
            let l = index[key]
            if l == nil { stats.misses += 1 }
            return l
        }
        guard let loc = found else { return .miss }
        guard loc.rawLength == dst.count else {
            lock.withLock { stats.misses += 1 }
            return .miss
        }
        let c: CodecBuffers
        do throws(TierError) { c = try checkoutCodec() } catch {
            lock.withLock { stats.readErrors += 1; stats.misses += 1 }
            return .miss
        }
        defer { checkin(c) }
        let record = UnsafeMutableRawBufferPointer(rebasing: c.buffer[0 ..< loc.length])
        let problem: String?
        do throws(TierError) {
            // `loc.segment` keeps the descriptor open even if the segment is evicted meanwhile.
            let n = try io.preadFull(loc.segment.fd, record, at: loc.offset)
            problem = Self.verifyAndDecode(UnsafeRawBufferPointer(rebasing: record[0 ..< n]), key: key,
                                           codec: c.codec, into: dst, maxRaw: config.maxBlockBytes)
        } catch {
            lock.withLock { stats.readErrors += 1; stats.misses += 1 }
            return .miss
        }
        if let problem {
            lock.withLock {
                stats.corruptReads += 1
                stats.misses += 1
                if let cur = index[key], cur.segment === loc.segment, cur.offset == loc.offset {
                    index[key] = nil
                    stats.blocks -= 1
                    stats.bytesOnDisk -= cur.length
                    changes.append(.removed(key))
                }
            }
            return .corrupt(problem)
        }
        lock.withLock {
            stats.hits += 1
            if index[key]?.segment === loc.segment { index[key]?.referenced = true }
        }
        return .hit
    }

    /// Checks header, key, lengths and payload checksum of one record, then decodes it into `dst`.
    /// Returns nil on success or the reason it failed.
    static func verifyAndDecode(_ record: UnsafeRawBufferPointer, key: BlockKey, codec: KVByteCodec,
                                into dst: UnsafeMutableRawBufferPointer, maxRaw: Int) -> String? {
        guard let h = DiskRecordFormat.parseHeader(record, maxRaw: maxRaw) else { return "bad header" }
        guard h.key == key else { return "key mismatch" }
        guard h.recordLength == record.count, h.rawLength == dst.count else { return "length mismatch" }
        let payload = UnsafeRawBufferPointer(rebasing: record[h.size...])
        guard DiskRecordFormat.checksum(payload) == h.payloadChecksum else { return "payload checksum mismatch" }
        do throws(TierError) { try codec.decode(payload, mode: h.mode, into: dst) } catch { return "\(error)" }
        return nil
    }
}

extension DiskBlockStore: KVBlockStore {
    /// The local disk.
    public var tier: Tier { .disk }

    /// 100 us per read at 1.5 GB/s: a datacenter NVMe drive before its reads were measured (decompression
    /// comes on top; the tier manager's calibration folds it in).
    public var costHint: LoadOrRecompute.Link { LoadOrRecompute.Link(latencySeconds: 100e-6, bytesPerSecond: 1.5e9) }

    public var capacityBlocks: Int? { config.capacityBlocks }
}
