import KVCache

extension DiskBlockStore {
    /// Reads the block `key` into `dst` (which must be exactly the block's size), verifying the checksums
    /// and the key first. O(bytes). A failed check drops the record and returns `.corrupt` (a miss), naming
    /// the segment file and the record's offset.
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
            return .corrupt("\(loc.segment.path) at offset \(loc.offset): \(problem)")
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
