import KVCache

/// What `DiskBlockStore.put` did.
public enum DiskPutOutcome: Equatable, Sendable {
    case stored
    case alreadyStored
    /// Not stored (full disk, I/O error, block larger than the tier): counted in stats, nothing lost
    /// elsewhere, no partial record ever served.
    case notStored(TierError)
}
