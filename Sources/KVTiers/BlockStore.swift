import KVCache

/// A tier below host memory that keeps whole blocks by key: the local disk (`DiskBlockStore`) today, a
/// remote store (L4: another node's memory, an object store) later. The tier manager needs exactly these
/// operations from it; a store must be thread-safe, verify what it returns (a damaged block is a miss,
/// never data), and answer "not stored" rather than fail when it has no room.
public protocol KVBlockStore: AnyObject, Sendable {
    /// Whether `key` is stored. O(1).
    func contains(_ key: BlockKey) -> Bool
    /// Stores a block's bytes under `key`, with the key of its parent in the prefix tree (nil for a first block).
    func put(_ key: BlockKey, parent: BlockKey?, bytes: UnsafeRawBufferPointer) -> DiskPutOutcome
    /// The parent key stored with `key`, if any. O(1).
    func parent(of key: BlockKey) -> BlockKey?
    /// Reads the block `key` into `dst` (exactly its size), verified.
    func read(_ key: BlockKey, into dst: UnsafeMutableRawBufferPointer) -> DiskReadOutcome
    /// Moves the keys dropped since the last call (eviction, corruption) into `out`.
    func drainRemoved(into out: inout [BlockKey])
    /// Blocks stored now.
    var count: Int { get }
}

extension DiskBlockStore: KVBlockStore {}
