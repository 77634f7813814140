import KVCache

extension KVTierManager {
    /// The fastest tier holding `key` now, or nil.
    public func location(of key: BlockKey) -> Tier? {
        lock.withLock {
            if index.deviceBlock(of: key) != nil { return .device }
            if index.readyHostSlot(of: key) != nil { return .host }
            if let store, store.contains(key) { return store.tier }
            return nil
        }
    }

    /// A snapshot of the per-tier counters.
    public var statistics: TierStatistics {
        lock.withLock {
            syncStoreChanges()
            var s = counters
            s.host.occupancy = index.hostCount
            s.device.occupancy = index.deviceCount
            if let store {
                let d = store.statistics
                s.diskStore = d
                s.disk.occupancy = d.blocks
            }
            s.hostAdmitted = admission.worthLoading(tier: .host, layout: layout)
            s.diskAdmitted = store.map { admission.worthLoading(tier: $0.tier, layout: layout) } ?? false
            s.hostBytesPerSecond = admission.link(.host)?.bytesPerSecond ?? 0
            s.diskBytesPerSecond = store.flatMap { admission.link($0.tier)?.bytesPerSecond } ?? 0
            return s
        }
    }

    /// The load-or-recompute rule now (bandwidth estimates move as transfers are measured).
    public var loadOrRecompute: LoadOrRecompute { lock.withLock { admission } }
}
