#if canImport(Glibc)
import Glibc
#endif
import KVCache

extension DiskBlockStore {
    // MARK: Rebuild

    /// Rebuilds the index from the directory's segments, oldest first. Files it cannot use are skipped
    /// with one warning each and left as they are; a directory written with another block size is
    /// refused before anything is read or deleted. The lock is not needed (called from `init`).
    func rebuild() throws(TierError) {
        let dir = config.directory
        let names = try io.listDirectory(dir).sorted()
        var ids: [UInt64] = []
        for n in names where n != "LOCK" && n != DiskTierFormat.fileName {
            if Self.isOwnTemporary(n) {
                try? io.unlink(dir + "/" + n)
            } else if let id = Self.segmentID(n) {
                ids.append(id)
            } else {
                let why = Self.looksLikeSegment(n) ? "not a segment name this store writes" : "not a disk tier file"
                config.warn("disk tier: skipped \(dir)/\(n): \(why)")
            }
        }
        try checkFormat(segmentIDs: ids)
        for id in ids.sorted() {
            // Past skipped files too, so a new segment never takes their name. `id` <= maxSegmentID.
            nextSegmentID = max(nextSegmentID, id + 1)
            let path = dir + "/" + Self.segmentName(id)
            let report: SegmentCheck
            do throws(TierError) {
                report = try Self.checkSegment(path: path, io: io, maxRaw: config.maxBlockBytes, repair: config.repairOnOpen)
            } catch {
                config.warn("disk tier: skipped a segment: \(error)")  // the error names the path
                continue
            }
            stats.droppedOnOpen += report.corrupt
            if report.records.isEmpty {
                try? io.unlink(path)
                continue
            }
            let fd: Int32
            do throws(TierError) { fd = try io.openRegularFile(path).fd } catch {
                config.warn("disk tier: skipped a segment: \(error)")  // the error names the path
                continue
            }
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
        if stats.droppedOnOpen > 0 {
            config.warn("disk tier \(dir): \(stats.droppedOnOpen) torn or corrupt records found on open were not served"
                        + (config.repairOnOpen ? " and were removed" : ""))
        }
        stats.segments = segments.count
        stats.capacityBytes = config.capacityBytes
        evictWhileOver(incomingBytes: 0, incomingBlocks: 0)
    }

    /// Refuses a directory whose segments were written with another block geometry (its `FORMAT` file,
    /// or for a directory written before there was one, a first record larger than this store's blocks:
    /// a rebuild would drop every such record as damaged), then records this store's format.
    private func checkFormat(segmentIDs: [UInt64]) throws(TierError) {
        let dir = config.directory
        let mine = DiskTierFormat(blockBytes: config.maxBlockBytes, elementSize: config.elementSize)
        let recorded = try DiskTierFormat.read(directory: dir, io: io)
        if !segmentIDs.isEmpty {
            let refusal = "; this store is configured for \(mine.summary): open it with that block size, or use another directory"
            if let recorded, recorded != mine { throw .invalidArgument("\(dir) holds \(recorded.summary)" + refusal) }
            if recorded == nil, let largest = largestFirstRecord(segmentIDs), largest > config.maxBlockBytes {
                throw .invalidArgument("\(dir) holds blocks of \(largest) bytes" + refusal)
            }
        }
        if recorded != mine { try mine.write(directory: dir, io: io) }
    }

    /// The largest decoded size named by the first record of each segment (unreadable ones ignored).
    private func largestFirstRecord(_ ids: [UInt64]) -> Int? {
        var largest: Int?
        let header = UnsafeMutableRawBufferPointer.allocate(byteCount: DiskRecordFormat.headerSize, alignment: 8)
        defer { header.deallocate() }
        for id in ids {
            guard let file = try? io.openRegularFile(config.directory + "/" + Self.segmentName(id)) else { continue }
            defer { io.close(file.fd) }
            guard let n = try? io.preadFull(file.fd, header, at: 0),
                  let h = DiskRecordFormat.parseHeader(UnsafeRawBufferPointer(rebasing: header[0 ..< n]),
                                                       maxRaw: Int(UInt32.max / 2)) else { continue }
            largest = max(largest ?? 0, h.rawLength)
        }
        return largest
    }

    /// The bytes of a segment read at once on open: 4 MiB.
    static let scanWindowBytes = 4 << 20

    /// The outcome of checking one segment file.
    struct SegmentCheck { var records: [DiskRecordFormat.Found]; var corrupt: Int; var size: Int; var rewritten: Bool }

    /// Scans the segment at `path`; with `repair`, rewrites it without its damaged records (write to a
    /// temporary file, fsync, rename over the original, fsync the directory), so a crash during repair
    /// leaves either the old or the new file.
    /// - Throws: `.invalidArgument` naming the path for anything that is not a regular file or is larger
    ///   than `maxSegmentBytes(maxRaw:)` (never read, never blocks), `.system` naming the path for I/O
    ///   failures. The file is read in windows of `scanWindowBytes` (or one record, when larger), so
    ///   memory does not grow with the segment's size.
    static func checkSegment(path: String, io: SystemIO, maxRaw: Int, repair: Bool) throws(TierError) -> SegmentCheck {
        let (fd, size) = try io.openRegularFile(path)
        defer { io.close(fd) }
        let limit = maxSegmentBytes(maxRaw: maxRaw)
        guard size <= limit else {
            throw .invalidArgument("\(path) holds \(size) bytes, more than the \(limit) of a segment of blocks up to \(maxRaw) bytes")
        }
        let scan: DiskRecordFormat.ScanResult
        do throws(TierError) {
            scan = try DiskRecordFormat.scan(size: size, maxRaw: maxRaw, windowBytes: scanWindowBytes) { (offset, into) throws(TierError) in
                try io.preadFull(fd, into, at: offset)
            }
        } catch { throw error.naming(path) }
        guard repair, scan.corrupt > 0 else {
            return SegmentCheck(records: scan.records, corrupt: scan.corrupt, size: scan.size, rewritten: false)
        }
        // Rewrite with only the good records, each read again into one record's buffer.
        let tmp = path + ".tmp"
        let out = try io.open(tmp, flags: O_WRONLY | O_CREAT | O_TRUNC)
        let record = UnsafeMutableRawBufferPointer.allocate(byteCount: DiskRecordFormat.largestRecord(maxRaw: maxRaw), alignment: 64)
        defer { record.deallocate() }
        var records: [DiskRecordFormat.Found] = []
        var off = 0
        do throws(TierError) {
            for r in scan.records {
                let rec = UnsafeMutableRawBufferPointer(rebasing: record[0 ..< r.header.recordLength])
                guard try io.preadFull(fd, rec, at: r.offset) == rec.count,
                      DiskRecordFormat.checksum(UnsafeRawBufferPointer(rebasing: rec[r.header.size...])) == r.header.payloadChecksum else {
                    throw TierError.corrupt("\(path) changed while it was repaired")
                }
                try io.pwriteAll(out, UnsafeRawBufferPointer(rec), at: off)
                records.append(.init(header: r.header, offset: off))
                off += rec.count
            }
            try io.fsync(out)
        } catch {
            io.close(out)
            try? io.unlink(tmp)
            throw error.naming(tmp)
        }
        io.close(out)
        do throws(TierError) {
            try io.rename(tmp, path)
            let dir = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)])
            try io.syncDirectory(dir.isEmpty ? "." : dir)
        } catch {
            try? io.unlink(tmp)
            throw error
        }
        return SegmentCheck(records: records, corrupt: scan.corrupt, size: off, rewritten: true)
    }
}
