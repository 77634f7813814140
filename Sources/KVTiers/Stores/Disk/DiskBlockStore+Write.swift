#if canImport(Glibc)
import Glibc
#endif
import KVCache

extension DiskBlockStore {
    // MARK: Codec pool

    func checkoutCodec() throws(TierError) -> CodecBuffers {
        if let c = lock.withLock({ codecs.popLast() }) { return c }
        return try CodecBuffers(config)
    }

    func checkin(_ c: CodecBuffers) { lock.withLock { codecs.append(c) } }

    // MARK: Write

    /// Stores `bytes` under `key` (compressed when it pays), with no parent recorded. O(bytes).
    @discardableResult
    public func put(_ key: BlockKey, bytes: UnsafeRawBufferPointer) -> DiskPutOutcome { put(key, parent: nil, bytes: bytes) }

    /// Stores `bytes` under `key` (compressed when it pays); the record names `parent` (nil for a first
    /// block), which `parent(of:)` returns, also after a restart. O(bytes).
    /// - Returns: `.stored`, `.alreadyStored` (the key is present: blocks with equal keys hold equal bytes),
    ///   or `.notStored` (full disk, I/O error, too large), counted in stats; its error names the segment
    ///   file or, when no file is involved, the store's directory.
    @discardableResult
    public func put(_ key: BlockKey, parent: BlockKey?, bytes: UnsafeRawBufferPointer) -> DiskPutOutcome {
        guard bytes.count <= config.maxBlockBytes, bytes.count % config.elementSize == 0 else {
            return lock.withLock {
                stats.notStored += 1
                return .notStored(.invalidArgument("\(config.directory): a block of \(bytes.count) bytes does not fit this store (blocks of up to \(config.maxBlockBytes) bytes, a multiple of \(config.elementSize))"))
            }
        }
        if contains(key) { return .alreadyStored }
        let c: CodecBuffers
        do throws(TierError) { c = try checkoutCodec() } catch {
            return lock.withLock { stats.notStored += 1; return .notStored(error.naming(config.directory)) }
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

    /// Appends one encoded record; the lock is held. A full disk (ENOSPC) evicts the oldest sealed
    /// segment and tries again, until the record fits or only the active segment is left.
    func append(_ record: UnsafeRawBufferPointer, key: BlockKey, parent: BlockKey?, rawLength: Int, mode: KVCodecMode) -> DiskPutOutcome {
        guard !closed else { stats.notStored += 1; return .notStored(.invalidArgument("\(config.directory): the store is closed")) }
        if index[key] != nil { return .alreadyStored }
        guard record.count <= config.capacityBytes else {
            stats.notStored += 1
            return .notStored(.invalidArgument("\(config.directory): a record of \(record.count) bytes is larger than the tier's capacity of \(config.capacityBytes) bytes"))
        }
        evictWhileOver(incomingBytes: record.count, incomingBlocks: 1)
        while true {
            let seg: Segment
            do throws(TierError) { seg = try activeSegment(for: record.count) } catch {
                stats.notStored += 1
                stats.writeErrors += 1
                return .notStored(error.naming(config.directory))
            }
            let offset = seg.size
            do throws(TierError) {
                try io.pwriteAll(seg.fd, record, at: offset)
                if config.syncEveryWrite { try io.fsync(seg.fd) }
            } catch {
                // Cut the partial record away; if even that fails, seal the segment so nothing follows it.
                // (A torn record left behind is never indexed, and a rebuild skips it by checksum.)
                if (try? io.truncate(seg.fd, to: offset)) == nil { seg.broken = true; active = nil }
                if case .system(_, ENOSPC) = error, evictForFullDisk() { continue }
                stats.notStored += 1
                stats.writeErrors += 1
                return .notStored(error.naming(seg.path))
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
    }

    /// The segment to append `bytes` to, sealing the active one and starting another when it is full.
    func activeSegment(for bytes: Int) throws(TierError) -> Segment {
        if let a = active, !a.broken, a.size == 0 || (a.size + bytes <= segmentLimit && a.keys.count < segmentBlockLimit) {
            return a
        }
        if let a = active { try? io.fsync(a.fd); active = nil }
        guard nextSegmentID <= Self.maxSegmentID else { throw .invalidArgument("\(config.directory): no segment ids left") }
        let id = nextSegmentID
        let path = config.directory + "/" + Self.segmentName(id)
        let fd = try io.open(path, flags: O_RDWR | O_CREAT | O_EXCL | O_NONBLOCK, mode: 0o600)
        nextSegmentID += 1
        try? io.syncDirectory(config.directory)
        let seg = Segment(id: id, fd: fd, path: path, io: io, size: 0)
        segments.append(seg)
        stats.segments = segments.count
        active = seg
        return seg
    }
}
