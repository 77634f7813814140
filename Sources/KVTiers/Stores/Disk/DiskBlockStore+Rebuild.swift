#if canImport(Glibc)
import Glibc
#endif
import KVCache

extension DiskBlockStore {
    func rebuild() throws(TierError) {
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
}
