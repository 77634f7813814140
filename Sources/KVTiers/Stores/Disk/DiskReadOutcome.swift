/// What `DiskBlockStore.read` found.
public enum DiskReadOutcome: Equatable, Sendable {
    case hit
    case miss
    /// The record failed a check (checksum, key, size, codec): it was dropped and counts as a miss.
    case corrupt(String)
}
