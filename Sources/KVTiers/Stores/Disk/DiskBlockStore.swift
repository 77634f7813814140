#if canImport(Glibc)
import Glibc
#endif
import KVCache
import KVPlan

/// The L3 tier: blocks compressed with the KV byte-plane codec in append-only, checksummed log segments.
///
/// - Crash safety: records are appended to the active segment; a record is only indexed after its write
///   returned. After a crash the index is rebuilt by scanning every segment: a record counts only when its
///   header and payload checksums hold, so torn or corrupt records are never served. A read checks the
///   payload checksum and the key again, so a byte flipped later is a miss, not bad data.
/// - Capacity: `capacityBytes` (and optionally `capacityBlocks`); when full, the oldest segment is deleted
///   with its blocks (FIFO by segment, as log-structured flash caches do).
/// - Failures: a full disk or an I/O error makes `put` return `.notStored` and bumps a counter; the partial
///   write is truncated away (or its segment sealed), never indexed. A full disk (ENOSPC) below the
///   configured capacity first evicts the oldest sealed segments to make room, counted in
///   `fullDiskEvictedSegments` and reported by one warning.
/// - Hostile directories: opening skips, with one warning naming it, every file it cannot use (unreadable,
///   not a regular file, oddly named, foreign, larger than any segment it writes), reads each segment into
///   one buffer of at most `maxSegmentBytes`, never blocks on a FIFO or device, and refuses a directory
///   written with another block size (`FORMAT`) instead of dropping its records.
/// - Concurrency: thread-safe. Encoding/decoding and reads run outside the lock (one codec per concurrent
///   caller from a small pool), appends are serialized.
/// - Exclusivity: the directory is locked (`flock` on `LOCK`) while the store is open.
public final class DiskBlockStore: @unchecked Sendable {
    // Sendable: all mutable state is behind `lock`; segments' descriptors are immutable and reference counted.
    public let config: DiskStoreConfig
    let io: SystemIO
    let lock = ConditionLock()
    private let lockFD: Int32
    let segmentLimit: Int
    let segmentBlockLimit: Int
    var index: [BlockKey: Location] = [:]
    var segments: [Segment] = []       // oldest first; the last one may be active
    var active: Segment?
    var nextSegmentID: UInt64 = 1
    var stats = DiskStoreStats()
    /// Blocks stored (only once `journalStores()` was called) and removed since the last drain, in the
    /// order they happened under `lock`.
    var changes: [DiskChange] = []
    var journalingStores = false
    var codecs: [CodecBuffers] = []
    var closed = false
    var warnedFullDisk = false

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
        guard io.isDirectory(config.directory) else { throw .invalidArgument("\(config.directory) is not a directory") }
        let lfd = try Self.lockDirectory(config.directory, io: io)
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

    /// Deletes the segment files, leftover temporary files and the format file in `directory`; a missing directory is
    /// fine. Refuses (`.locked`) while a store has the directory open.
    public static func removeSegments(in directory: String) throws(TierError) {
        let io = SystemIO()
        guard let names = try? io.listDirectory(directory) else { return }
        let lockFD = try lockDirectory(directory, io: io)
        defer { io.close(lockFD) }
        for n in names where segmentID(n) != nil || isOwnTemporary(n) || n == DiskTierFormat.fileName {
            try io.unlink(directory + "/" + n)
        }
    }

    /// Opens `directory/LOCK` and takes its exclusive lock; returns the descriptor (closing it releases
    /// the lock). Throws `.locked` when another store or check holds it, `.system` naming the file.
    static func lockDirectory(_ directory: String, io: SystemIO) throws(TierError) -> Int32 {
        let path = directory + "/LOCK"
        let fd = try io.open(path, flags: O_RDWR | O_CREAT | O_NONBLOCK)
        do throws(TierError) { try io.lockExclusive(fd) } catch {
            io.close(fd)
            if case .system(_, let e) = error, e == EWOULDBLOCK { throw .locked(directory) }
            throw error.naming(path)
        }
        return fd
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
}

extension DiskBlockStore: KVBlockStore {
    /// The local disk.
    public var tier: Tier { .disk }

    /// 100 us per read at 1.5 GB/s: a datacenter NVMe drive before its reads were measured (decompression
    /// comes on top; the tier manager's calibration folds it in).
    public var costHint: LoadOrRecompute.Link { LoadOrRecompute.Link(latencySeconds: 100e-6, bytesPerSecond: 1.5e9) }

    public var capacityBlocks: Int? { config.capacityBlocks }
}
