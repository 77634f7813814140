import KVCache

/// Per-tier counters.
public struct TierCounters: Sendable, Equatable {
    /// Blocks found in this tier by `lookup` (the part of a prefix served from here).
    public var hits = 0
    /// Blocks written into / removed from this tier.
    public var storedBlocks = 0
    public var removedBlocks = 0
    /// Bytes moved into this tier and out of it (towards the device).
    public var bytesIn = 0
    public var bytesOut = 0
    /// Blocks held now, and the most it can hold.
    public var occupancy = 0
    public var capacity = 0
    /// Blocks loaded from this tier towards the device, and the time it took (per load call).
    public var loadedBlocks = 0
    public var loadCalls = 0
    public var loadNanosTotal: UInt64 = 0
    public var loadNanosMax: UInt64 = 0
    /// Blocks that could not be stored (no room, I/O error) or loaded (corrupt, vanished).
    public var notStored = 0
    public var failedLoads = 0
    /// Host tier: blocks evicted without a copy on disk (lost to the tiers).
    public var droppedBlocks = 0

    public init() {}

    /// Mean latency of one load call, in microseconds.
    public var meanLoadMicros: Double { loadCalls == 0 ? 0 : Double(loadNanosTotal) / Double(loadCalls) / 1000 }
}

/// A snapshot of the tier manager's state.
public struct TierStatistics: Sendable {
    public var device = TierCounters()
    public var host = TierCounters()
    public var disk = TierCounters()
    /// Where the host tier's memory is, and why it fell back if it did.
    public var hostPlacement: HostPlacementReport?
    /// The disk store's own counters.
    public var diskStore: DiskStoreStats?
    /// Whether admission currently lets loads come from each tier.
    public var hostAdmitted = true
    public var diskAdmitted = true
    /// Current bandwidth estimates (bytes per second).
    public var hostBytesPerSecond = 0.0
    public var diskBytesPerSecond = 0.0
}
