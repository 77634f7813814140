#if canImport(Glibc)
import Glibc
#endif

/// What `DiskStoreCheck.run` found in a disk tier directory.
public struct DiskCheckReport: Sendable, Equatable, Codable {
    /// Records found, good and damaged.
    public var blocks = 0
    /// Records whose header and payload checksums hold.
    public var ok = 0
    /// Torn or corrupt records (and garbage regions).
    public var corrupt = 0
    /// Damaged records physically removed (0 without repair).
    public var dropped = 0
    /// Segment files checked.
    public var segments = 0
    /// Segment files rewritten without their damaged records.
    public var rewrittenSegments = 0
}

/// `fsck` for the disk tier: checks every record of every segment and, with `repair`, rewrites damaged
/// segments without their torn or corrupt records (crash-safe: temporary file, fsync, rename), so a second
/// run finds nothing corrupt. Takes the directory's lock, so it never races an open store.
public enum DiskStoreCheck {
    /// - Parameters:
    ///   - maxBlockBytes: the largest decoded block a valid header may announce (default 256 MiB).
    /// - Throws: `.locked` when a store has the directory open, `.system` for I/O failures.
    public static func run(directory: String, repair: Bool, maxBlockBytes: Int = 1 << 28) throws(TierError) -> DiskCheckReport {
        let io = SystemIO()
        let lockFD = try io.open(directory + "/LOCK", flags: O_RDWR | O_CREAT)
        defer { io.close(lockFD) }
        do throws(TierError) { try io.lockExclusive(lockFD) } catch {
            if case .system(_, let e) = error, e == EWOULDBLOCK { throw .locked(directory) }
            throw error
        }
        var report = DiskCheckReport()
        let names = try io.listDirectory(directory).filter { DiskBlockStore.segmentID($0) != nil }.sorted()
        for name in names {
            let check = try DiskBlockStore.checkSegment(path: directory + "/" + name, io: io, maxRaw: maxBlockBytes,
                                                        repair: repair)
            report.segments += 1
            report.ok += check.records.count
            report.corrupt += check.corrupt
            report.blocks += check.records.count + check.corrupt
            if check.rewritten { report.dropped += check.corrupt; report.rewrittenSegments += 1 }
        }
        return report
    }
}
