import KVCache

/// A tier below host memory that keeps whole blocks by key: the local disk (`DiskBlockStore`) today, a
/// remote store (another node's memory, Redis, an object store) later. `KVTierManager` holds its store
/// as `any KVBlockStore` and needs exactly these operations from it.
///
/// A store must be thread-safe, verify what it returns (a damaged block is a miss, never data), and
/// answer "not stored" rather than fail when it has no room. `contains` and `parent(of:)` are O(1);
/// `put` and `read` cost one block's I/O.
public protocol KVBlockStore: AnyObject, Sendable {
    /// The tier it serves as (`.disk` for a local store, `.remote` for a network one): the row of
    /// `LoadOrRecompute` its loads are priced and measured in.
    var tier: Tier { get }
    /// What one block read costs before anything was measured: the seed of its `LoadOrRecompute` row.
    var costHint: LoadOrRecompute.Link { get }
    /// The most blocks it keeps (nil: bounded by bytes only).
    var capacityBlocks: Int? { get }
    /// Blocks stored now.
    var count: Int { get }
    /// The store's own counters.
    var statistics: DiskStoreStats { get }
    /// Whether `key` is stored. O(1).
    func contains(_ key: BlockKey) -> Bool
    /// Stores a block's bytes under `key`, with the key of its parent in the prefix tree (nil for a
    /// first block).
    func put(_ key: BlockKey, parent: BlockKey?, bytes: UnsafeRawBufferPointer) -> DiskPutOutcome
    /// The parent key stored with `key`, if any. O(1).
    func parent(of key: BlockKey) -> BlockKey?
    /// Reads the block `key` into `dst` (exactly its size), verified.
    func read(_ key: BlockKey, into dst: UnsafeMutableRawBufferPointer) -> DiskReadOutcome
    /// Every stored block with its parent (recovery announcements). O(blocks).
    func blocksWithParents() -> [(key: BlockKey, parent: BlockKey?)]
    /// From now on, journal stores as well as removals for `drainChanges`.
    func journalStores()
    /// Moves the changes journaled since the last call (stores once `journalStores` was called; removals
    /// by eviction or corruption always) into `out`, in the order the store made them.
    func drainChanges(into out: inout [DiskChange])
    /// Finishes and releases the store's resources; afterwards it stores and reads nothing. Idempotent.
    func close()
}

extension KVBlockStore {
    /// How many of `keys`, from the first, are stored: the longest stored run. O(run).
    public func containsRun(_ keys: some Collection<BlockKey>) -> Int {
        var n = 0
        for k in keys {
            guard contains(k) else { break }
            n += 1
        }
        return n
    }
}
