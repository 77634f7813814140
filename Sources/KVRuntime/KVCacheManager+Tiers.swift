import KVCache
import KVTiers

extension KVCacheManager {
    /// Puts `tiers` below this cache, the runtime's wiring of a tier manager under a device pool: it
    /// becomes the cache's `evictionObserver` (a block leaving the device is copied down; the cache holds
    /// it weakly, so the caller keeps it alive) and its one `lowerTierEvents` source. Nil takes both
    /// away. `ServingTiers` wires a serving loop's parts the same way. O(1).
    public func placeTiers(_ tiers: KVTierManager?) {
        evictionObserver = tiers
        lowerTierEvents = tiers.map { [$0] } ?? []
    }
}
