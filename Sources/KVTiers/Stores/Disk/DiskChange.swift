import KVCache

/// One change of the disk tier's contents, as `DiskBlockStore.drainChanges` reports it.
public enum DiskChange: Equatable, Sendable {
    /// A block was written, with the parent key its record names.
    case stored(BlockKey, parent: BlockKey?)
    /// A block left the store (its segment was evicted, or its record failed a check).
    case removed(BlockKey)
}
