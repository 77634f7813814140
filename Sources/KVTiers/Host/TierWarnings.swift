import Glibc
import Logging
import Synchronization

/// The library's log: every degraded path of the tiers (host memory not NUMA-bound or not page-locked,
/// records dropped when a disk store opens, a full disk, a tier whose loads admission turned off) goes
/// through `once`, which logs each distinct message the first time it is seen in the process, as a
/// swift-log warning under the label `kvcache`.
///
/// The level comes from `KVCACHE_LOG_LEVEL` (trace, debug, info, notice, warning, error, critical;
/// default warning). Messages go to the process's logging backend when the host has bootstrapped
/// swift-log's `LoggingSystem`, else to stderr (a library never writes on a host's stdout). O(message)
/// per call, one set probe under a mutex.
public enum TierWarnings {
    private static let seen = Mutex(Set<String>())

    /// The library's logger; `KVCACHE_LOG_LEVEL` sets its level.
    public static let logger: Logger = {
        var l = Logger(label: "kvcache") { label in
            // swift-log's default handler writes on stdout: route the library to stderr instead.
            StreamLogHandler.standardError(label: label)
        }
        l.logLevel = level(from: getenv("KVCACHE_LOG_LEVEL").map { String(cString: $0) }) ?? .warning
        return l
    }()

    /// The level a `KVCACHE_LOG_LEVEL` value names, or nil for none or an unknown name.
    public static func level(from value: String?) -> Logger.Level? {
        value.flatMap { Logger.Level(rawValue: $0.lowercased()) }
    }

    /// Logs `message` as a warning the first time it is seen in this process.
    @Sendable public static func once(_ message: String) {
        let first = seen.withLock { $0.insert(message).inserted }
        guard first else { return }
        logger.warning("\(message)")
    }

    /// Logs a degraded path once per `key` (a message whose figures change from call to call, such as
    /// a full disk's byte counts, is logged the first time only).
    @Sendable public static func once(key: String, _ message: @autoclosure () -> String) {
        let first = seen.withLock { $0.insert("key:" + key).inserted }
        guard first else { return }
        logger.warning("\(message())")
    }
}
