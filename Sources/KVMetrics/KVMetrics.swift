import CoreMetrics
import KVCache
import Prometheus
import Synchronization

/// The cache's figures as swift-metrics counters, gauges and timers, named and defined like vLLM's, in
/// a Prometheus registry of their own (no global `MetricsSystem` bootstrap, so a host's own metrics
/// backend is left alone):
///
/// | name | kind | meaning |
/// |---|---|---|
/// | `kvcache:prefix_cache_queries` | counter | prompt tokens asked about by `lookup` (vLLM's `prefix_cache_queries`) |
/// | `kvcache:prefix_cache_hits` | counter | of those, tokens found cached (vLLM's `prefix_cache_hits`) |
/// | `kvcache:kv_cache_usage_perc` | gauge | fraction of device blocks held by sequences, 0...1 (vLLM's) |
/// | `kvcache:evicted_blocks` | counter | device blocks evicted from the prefix cache |
/// | `kvcache:tier_hits{tier}` | counter | blocks of looked-up prefixes found in a lower tier |
/// | `kvcache:tier_bytes_moved{tier,direction}` | counter | bytes written into (`in`) or loaded out of (`out`) a tier |
/// | `kvcache:tier_load_seconds{tier}` | histogram | latency of each load call from a tier to the device |
///
/// `tier` is `host`, `disk` or `remote`. Counters are fed cumulative totals (`update`): each update adds
/// the difference to the previous one, so updating every step or once at the end gives the same
/// exposition. An update is a few atomic adds and allocates nothing; O(1). Thread-safe: updates and
/// `exposition()` may come from different threads.
public final class KVMetrics: Sendable {
    /// Cumulative totals of one lower tier.
    public struct TierTotals: Sendable, Equatable {
        public var hits = 0
        public var bytesIn = 0
        public var bytesOut = 0
        public init(hits: Int = 0, bytesIn: Int = 0, bytesOut: Int = 0) {
            self.hits = hits; self.bytesIn = bytesIn; self.bytesOut = bytesOut
        }
    }

    /// The tiers below the device, in label order.
    public static let lowerTiers: [Tier] = [.host, .disk, .remote]
    /// Bucket bounds of the load-latency histograms: host copies take microseconds, disk reads up to
    /// seconds.
    public static let loadBuckets: [Duration] = [
        .microseconds(10), .microseconds(50), .microseconds(100), .microseconds(500), .milliseconds(1),
        .milliseconds(5), .milliseconds(10), .milliseconds(50), .milliseconds(100), .milliseconds(500), .seconds(1),
        .seconds(5),
    ]

    private struct Last {
        var cache = KVCacheStats()
        var tiers: [TierTotals] = Array(repeating: TierTotals(), count: KVMetrics.lowerTiers.count)
    }

    private struct TierMetrics {
        let hits: CoreMetrics.Counter
        let bytesIn: CoreMetrics.Counter
        let bytesOut: CoreMetrics.Counter
        let load: CoreMetrics.Timer
    }

    /// Where the metrics live; `exposition()` writes its text format.
    public let registry: PrometheusCollectorRegistry
    private let queries: CoreMetrics.Counter
    private let hits: CoreMetrics.Counter
    private let usage: CoreMetrics.Gauge
    private let evicted: CoreMetrics.Counter
    private let tiers: [TierMetrics]
    private let last = Mutex(Last())

    /// - Parameters:
    ///   - prefix: prepended to every name (vLLM writes `vllm:`).
    ///   - labels: added to every metric (vLLM adds `model_name`): several caches share one `registry`
    ///     when each has its own values of the same label names.
    ///   - registry: where the metrics go; a new one by default.
    public init(prefix: String = "kvcache:", labels: [(String, String)] = [],
                registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.durationHistogramBuckets = ["\(prefix)tier_load_seconds": Self.loadBuckets]
        queries = CoreMetrics.Counter(label: "\(prefix)prefix_cache_queries", dimensions: labels, factory: factory)
        hits = CoreMetrics.Counter(label: "\(prefix)prefix_cache_hits", dimensions: labels, factory: factory)
        usage = CoreMetrics.Gauge(label: "\(prefix)kv_cache_usage_perc", dimensions: labels, factory: factory)
        evicted = CoreMetrics.Counter(label: "\(prefix)evicted_blocks", dimensions: labels, factory: factory)
        tiers = Self.lowerTiers.map { t in
            let tier = labels + [("tier", t.description)]
            return TierMetrics(
                hits: CoreMetrics.Counter(label: "\(prefix)tier_hits", dimensions: tier, factory: factory),
                bytesIn: CoreMetrics.Counter(label: "\(prefix)tier_bytes_moved", dimensions: tier + [("direction", "in")], factory: factory),
                bytesOut: CoreMetrics.Counter(label: "\(prefix)tier_bytes_moved", dimensions: tier + [("direction", "out")], factory: factory),
                load: CoreMetrics.Timer(label: "\(prefix)tier_load_seconds", dimensions: tier, factory: factory))
        }
        usage.record(0.0)
    }

    /// Takes the device cache's counters (cumulative, as `KVCacheManager.stats` gives them). A counter
    /// that went down (a new cache behind the same metrics) restarts from its new value. O(1).
    public func update(_ stats: KVCacheStats) {
        let previous = last.withLock { l in
            defer { l.cache = stats }
            return l.cache
        }
        queries.increment(by: Self.delta(stats.queryTokens, previous.queryTokens))
        hits.increment(by: Self.delta(stats.hitTokens, previous.hitTokens))
        evicted.increment(by: Self.delta(stats.evictedBlocks, previous.evictedBlocks))
        usage.record(stats.usage)
    }

    /// Takes a lower tier's totals (cumulative). A device tier is ignored (its figures come from
    /// `update(_: KVCacheStats)`). O(1).
    public func update(tier: Tier, totals: TierTotals) {
        guard let i = Self.lowerTiers.firstIndex(of: tier) else { return }
        let previous = last.withLock { l in
            defer { l.tiers[i] = totals }
            return l.tiers[i]
        }
        tiers[i].hits.increment(by: Self.delta(totals.hits, previous.hits))
        tiers[i].bytesIn.increment(by: Self.delta(totals.bytesIn, previous.bytesIn))
        tiers[i].bytesOut.increment(by: Self.delta(totals.bytesOut, previous.bytesOut))
    }

    /// Records one load call from `tier` that took `nanos` nanoseconds. O(buckets).
    public func observeLoad(tier: Tier, nanos: UInt64) {
        guard let i = Self.lowerTiers.firstIndex(of: tier) else { return }
        tiers[i].load.recordNanoseconds(Int64(clamping: nanos))
    }

    /// The Prometheus text exposition (format 0.0.4) of every metric. O(metrics); allocates.
    public func exposition() -> String { registry.emitToString() }

    /// Appends the exposition to `buffer` (keeps its capacity between scrapes). O(metrics).
    public func emit(into buffer: inout [UInt8]) { registry.emit(into: &buffer) }

    private static func delta(_ now: Int, _ before: Int) -> Int { now >= before ? now - before : now }
}
