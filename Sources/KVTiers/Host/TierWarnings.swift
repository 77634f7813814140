import Synchronization

/// Warnings of the tier layer: each distinct message once per process, on stderr.
public enum TierWarnings {
    private static let seen = Mutex(Set<String>())

    /// Prints `message` to stderr the first time it is seen in this process.
    @Sendable public static func once(_ message: String) {
        let first = seen.withLock { $0.insert(message).inserted }
        guard first else { return }
        SystemIO().writeStandardError("kvcache: warning: \(message)\n")
    }
}
