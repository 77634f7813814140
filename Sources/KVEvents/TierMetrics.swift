import KVCache
import KVMetrics
import KVTiers

extension KVMetrics {
    /// Takes the tier manager's per-tier totals: hits, bytes written into each tier and loaded out of
    /// it. The disk counters are reported under the store's own tier (`disk`, or `remote` for a shared
    /// store). O(1).
    public func update(_ s: TierStatistics, storeTier: Tier = .disk) {
        update(tier: .host, totals: TierTotals(hits: s.host.hits, bytesIn: s.host.bytesIn, bytesOut: s.host.bytesOut))
        update(tier: storeTier, totals: TierTotals(hits: s.disk.hits, bytesIn: s.disk.bytesIn, bytesOut: s.disk.bytesOut))
    }

    /// A `TierConfig.loadObserver` that records each load call in `tier_load_seconds`.
    public var loadObserver: @Sendable (Tier, UInt64) -> Void {
        { [self] tier, nanos in observeLoad(tier: tier, nanos: nanos) }
    }
}
