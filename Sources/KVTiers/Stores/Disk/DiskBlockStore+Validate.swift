import KVCache

extension DiskBlockStore {
    /// Checks the store's invariants and throws the first one broken: every indexed record lies inside a
    /// live segment that lists its key, the counters agree with the index, the active segment is the
    /// newest, and the store holds no more than its capacity. O(blocks + segments).
    public func validate() throws(InvariantViolation) {
        try lock.withLock { () throws(InvariantViolation) in
            let live = Set(segments.map(ObjectIdentifier.init))
            var bytes = 0
            for (k, loc) in index {
                guard live.contains(ObjectIdentifier(loc.segment)) else { throw InvariantViolation("\(k) in an evicted segment") }
                guard loc.offset >= 0, loc.length > 0, loc.offset + loc.length <= loc.segment.size else {
                    throw InvariantViolation("\(k) at \(loc.offset)+\(loc.length) outside segment \(loc.segment.id)")
                }
                bytes += loc.length
            }
            var listed = 0
            for seg in segments { for k in seg.keys where index[k]?.segment === seg { listed += 1 } }
            guard listed == index.count else { throw InvariantViolation("segments list \(listed) of \(index.count) blocks") }
            guard stats.blocks == index.count, stats.bytesOnDisk == bytes, stats.segments == segments.count else {
                throw InvariantViolation("counters \(stats.blocks) blocks, \(stats.bytesOnDisk) bytes, \(stats.segments) "
                                         + "segments; index \(index.count), \(bytes), \(segments.count)")
            }
            if let active, active !== segments.last { throw InvariantViolation("the active segment is not the newest") }
            guard bytes <= config.capacityBytes, index.count <= config.capacityBlocks ?? Int.max else {
                throw InvariantViolation("\(index.count) blocks, \(bytes) bytes over capacity")
            }
        }
    }
}
