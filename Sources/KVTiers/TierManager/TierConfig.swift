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
    /// Whether loading from each tier pays against recomputation; the store's row, when the caller
    /// leaves it empty, comes from the store's cost hint.
    public var admission = LoadOrRecompute()
    /// Keep `KVEvent`s (stored/removed with tier .host/.disk) for `drainEvents`.
    public var recordEvents = false
    /// Told each load call's latency as it completes (tier, nanoseconds), for metrics; called under the
    /// manager's lock, so it must be quick and must not call back into the tiers.
    public var loadObserver: (@Sendable (Tier, UInt64) -> Void)? = nil
    /// sysfs root for `.nearDevice` placement (tests use a fixture).
    public var sysfsRoot = "/sys"

    public init(layout: KVGeometry, hostBlocks: Int, disk: DiskStoreConfig? = nil) {
        self.layout = layout
        self.hostBlocks = hostBlocks
        self.disk = disk
    }
}
