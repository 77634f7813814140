#if canImport(Glibc)
import Glibc
#endif
import KVCache

extension DiskBlockStore {
    /// Deletes the oldest segments until `incoming` more fits. The lock is held. O(blocks in them).
    ///
    /// Second chance: blocks of the victim that were read since they were written are copied to the head
    /// of the log (record bytes as they are, checksums still valid) instead of being dropped, at most half
    /// of the victim's blocks, so each eviction still frees room. Blocks that are not read again age out
    /// on the next pass (a CLOCK approximation of LRU over a FIFO log).
    func evictWhileOver(incomingBytes: Int, incomingBlocks: Int) {
        let maxBlocks = config.capacityBlocks ?? Int.max
        while !segments.isEmpty,
              stats.bytesOnDisk + incomingBytes > config.capacityBytes || index.count + incomingBlocks > maxBlocks {
            evictOldest(secondChance: config.secondChance)
        }
    }

    /// The disk is full (ENOSPC) below the tier's capacity: evicts the oldest sealed segment, without
    /// second chances (copying needs room), counts it and warns once per store. The lock is held.
    /// Returns false, evicting nothing, when only the active segment is left.
    func evictForFullDisk() -> Bool {
        if !warnedFullDisk {
            warnedFullDisk = true
            config.warn("disk tier \(config.directory): the disk is full (ENOSPC) with \(stats.bytesOnDisk) of "
                        + "\(config.capacityBytes) bytes used; evicting the oldest segments to make room")
        }
        guard let oldest = segments.first, oldest !== active else { return false }
        evictOldest(secondChance: false)
        stats.fullDiskEvictedSegments += 1
        return true
    }

    /// Deletes the oldest segment with its blocks, except those given a second chance. The lock is held.
    private func evictOldest(secondChance: Bool) {
        let victim = segments.removeFirst()
        if victim === active { active = nil }
        var live: [(BlockKey, Location)] = []
        for k in victim.keys { if let loc = index[k], loc.segment === victim { live.append((k, loc)) } }
        var keep = secondChance ? live.filter(\.1.referenced) : []
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

    /// Copies one record's bytes from its (evicted) segment to the active one. The lock is held.
    func reinsert(_ key: BlockKey, from loc: Location) -> Bool {
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
}
