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
    /// Segments evicted because the disk was full (ENOSPC) before the tier reached its capacity.
    public var fullDiskEvictedSegments = 0
    /// Torn or corrupt records found (and not served) when the store was opened.
    public var droppedOnOpen = 0
}
