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
    /// Files skipped (unreadable, not regular files, oddly named, larger than any segment), one warning each.
    public var skipped = 0
}

/// `fsck` for the disk tier: checks every record of every segment and, with `repair`, rewrites damaged
/// segments without their torn or corrupt records (crash-safe: temporary file, fsync, rename), so a second
/// run finds nothing corrupt. Takes the directory's lock, so it never races an open store.
public enum DiskStoreCheck {
    /// - Parameters:
    ///   - maxBlockBytes: the largest decoded block a valid header may announce (default 256 MiB) when the
    ///     directory has no `FORMAT` file; with one, its block size.
    ///   - warn: gets one line, naming the file, for each file skipped.
    /// - Throws: `.locked` when a store has the directory open, `.invalidArgument` when `directory` is not
    ///   a directory, `.corrupt` for an unreadable `FORMAT`, `.system` (with the path) for I/O failures.
    ///   Never blocks on a FIFO or device; memory is one segment's bytes at most.
    public static func run(directory: String, repair: Bool, maxBlockBytes: Int = 1 << 28,
                           warn: @Sendable (String) -> Void = TierWarnings.once) throws(TierError) -> DiskCheckReport {
        let io = SystemIO()
        guard io.isDirectory(directory) else { throw .invalidArgument("\(directory) is not a directory") }
        let lockFD = try DiskBlockStore.lockDirectory(directory, io: io)
        defer { io.close(lockFD) }
        let maxRaw = try DiskTierFormat.read(directory: directory, io: io)?.blockBytes ?? maxBlockBytes
        var report = DiskCheckReport()
        for name in try io.listDirectory(directory).sorted() {
            guard DiskBlockStore.segmentID(name) != nil else {
                if DiskBlockStore.looksLikeSegment(name) {
                    report.skipped += 1
                    warn("disk fsck: skipped \(directory)/\(name): not a segment name a store writes")
                }
                continue
            }
            let path = directory + "/" + name
            let check: DiskBlockStore.SegmentCheck
            do throws(TierError) {
                check = try DiskBlockStore.checkSegment(path: path, io: io, maxRaw: maxRaw, repair: repair)
            } catch {
                report.skipped += 1
                warn("disk fsck: skipped a segment: \(error)")  // the error names the path
                continue
            }
            report.segments += 1
            report.ok += check.records.count
            report.corrupt += check.corrupt
            report.blocks += check.records.count + check.corrupt
            if check.rewritten { report.dropped += check.corrupt; report.rewrittenSegments += 1 }
        }
        return report
    }
}
