import KVCache
import KVPlan

/// When a block evicted from (or stored in) the device pool is copied to host memory.
public enum TierWritePolicy: Sendable, Equatable {
    /// Copy when the block leaves L1, and only the first time (RAGCache): a block already on host is
    /// not copied again.
    case writeBack
    /// Copy as soon as the block is stored in L1 (SGLang HiCache write-through): eviction then costs nothing.
    case writeThrough
    /// Copy once the block has been hit `n` times in L1 (SGLang's selective write-through); colder
    /// blocks are dropped on eviction.
    case writeAfterHits(Int)
}

/// Configuration of a `KVTierManager`.
public struct TierConfig: Sendable {
    /// The engine's KV layout (block size, layer groups).
    public var layout: KVGeometry
    /// Blocks of the L2 host tier (0: no host tier).
    public var hostBlocks: Int
    /// NUMA placement of the host tier.
    public var hostPlacement: NumaPlacement = .local
    /// Page-lock the host tier where permitted.
    public var lockHostMemory = true
    /// The L3 disk tier, if any.
    public var disk: DiskStoreConfig? = nil
    public var writePolicy: TierWritePolicy = .writeBack
    /// Layer groups per block: loads complete group by group.
    public var layerGroups = 4
    /// Transfer worker threads.
    public var workers = 2
    /// Host occupancy above which cold host blocks are written to disk in the background (L2 -> L3), so
    /// that evicting them later costs nothing. A host block evicted before its background write still
    /// goes to disk, inline (slower, never lost). At 1.0 every disk write is such an inline write
    /// (deterministic: the trace replay uses it).
    public var spillWatermark = 0.9
    /// Measure host copy and codec speed once at start to seed the admission model's bandwidths.
    public var calibrateAtStart = true
    /// Copy evicted L1 blocks before `willEvict` returns (simple engines); otherwise the engine calls
    /// `waitForEvictionCopies()` before it writes into newly allocated blocks.
    public var synchronousEvictionCopies = false
    /// Whether loading from each tier pays against recomputation.
    public var admission = TierAdmission()
    /// Keep `KVEvent`s (stored/removed with tier .host/.disk) for `drainEvents`.
    public var recordEvents = false
    /// sysfs root for `.nearDevice` placement (tests use a fixture).
    public var sysfsRoot = "/sys"

    public init(layout: KVGeometry, hostBlocks: Int, disk: DiskStoreConfig? = nil) {
        self.layout = layout; self.hostBlocks = hostBlocks; self.disk = disk
    }
}

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

/// The result of `KVTierManager.lookup`: the longest prefix found across tiers.
public struct TierLookup: Sendable, Equatable {
    /// Leading blocks already in the device pool (as the caller's L1 lookup said).
    public var deviceBlocks: Int
    /// Where each following block is (`.host` or `.disk`), in prompt order: the load plan.
    public var locations: [Tier]
    /// The prefix stopped because loading the next block would be slower than recomputing it.
    public var limitedByAdmission: Bool

    public var hostBlocks: Int { locations.count { $0 == .host } }
    public var diskBlocks: Int { locations.count { $0 == .disk } }
    /// Blocks to load from lower tiers.
    public var loadBlocks: Int { locations.count }
    /// Blocks of the prefix found anywhere.
    public var totalBlocks: Int { deviceBlocks + locations.count }
}
