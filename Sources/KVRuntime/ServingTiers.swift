import KVCache
import KVPlan
import KVScheduler
import KVTiers

/// What lies below a `ServingLoop`'s device pool, which the loop wires into the cache manager and the
/// scheduler when it is built (the one place that wiring is written; a tier manager alone goes below a
/// cache through `KVCacheManager.placeTiers`):
///
/// - `evictionObserver` becomes the cache's `evictionObserver` (blocks leaving the device go down); the
///   loop keeps it alive, the cache holds it weakly.
/// - `prefixLoadSource` becomes the scheduler's: prompt blocks after the device hit are loaded from it at
///   admission, and (when it records them) committed prompt blocks are reported to it.
/// - `swapSpace` becomes the scheduler's; when it is a `TierSwapSpace` the loop performs each plan's swap
///   copies before the engine runs (`swapCopies`), else the swaps move no bytes (the modelled engine
///   prices them instead).
/// - `events` become the cache's `lowerTierEvents`.
///
/// `init(tiers:swapBlocks:lockSwapMemory:)` builds all of it over the real tiers (`KVTierManager`:
/// `TierPrefixSource`, a `TierSwapSpace` over the tiers' device memory); the memberwise `init` takes any
/// stand-ins (the modelled engine's keys-only `HostPrefixTier` and `CountingSwapSpace`). A value: it
/// only names the parts; they are classes the loop shares with the scheduler and the cache.
public struct ServingTiers {
    public var evictionObserver: (any BlockEvictionObserver)?
    public var prefixLoadSource: (any PrefixLoadSource)?
    public var swapSpace: (any SwapSpace)?
    public var events: [any KVEventSource]
    /// `swapSpace` when it moves bytes.
    public var swapCopies: TierSwapSpace? { swapSpace as? TierSwapSpace }

    /// Any parts, or none (the default: no lower tier, preemption by recompute).
    public init(evictionObserver: (any BlockEvictionObserver)? = nil, prefixLoadSource: (any PrefixLoadSource)? = nil,
                swapSpace: (any SwapSpace)? = nil, events: [any KVEventSource] = []) {
        self.evictionObserver = evictionObserver
        self.prefixLoadSource = prefixLoadSource
        self.swapSpace = swapSpace
        self.events = events
    }

    /// The real tiers: `tiers` hears evictions and adds its events, a `TierPrefixSource` over it loads and
    /// records prompt blocks, and with `swapBlocks` > 0 a `TierSwapSpace` of that many host slots over
    /// `tiers.device` takes preempted requests' bytes.
    /// - Throws: the swap slab's errors (sizes, memory); nothing is wired then.
    public init(tiers: KVTierManager, swapBlocks: Int = 0, lockSwapMemory: Bool = false) throws(TierError) {
        let swap = swapBlocks > 0 ? try TierSwapSpace(device: tiers.device, capacityBlocks: swapBlocks, lockMemory: lockSwapMemory) : nil
        self.init(evictionObserver: tiers, prefixLoadSource: TierPrefixSource(tiers: tiers), swapSpace: swap, events: [tiers])
    }

    /// The prefix source over the real tiers, when that is what was wired (its `loaded` counts).
    public var tierPrefixSource: TierPrefixSource? { prefixLoadSource as? TierPrefixSource }

    /// Sets the parts on `scheduler` and its cache.
    func wire(_ scheduler: Scheduler) {
        if let evictionObserver { scheduler.cache.evictionObserver = evictionObserver }
        if !events.isEmpty { scheduler.cache.lowerTierEvents = events }
        if let prefixLoadSource { scheduler.prefixLoadSource = prefixLoadSource }
        if let swapSpace { scheduler.swapSpace = swapSpace }
    }
}
