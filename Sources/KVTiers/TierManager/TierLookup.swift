import KVCache

/// The result of `KVTierManager.lookup`: the longest prefix found across tiers.
public struct TierLookup: Sendable, Equatable {
    /// Leading blocks already in the device pool (as the caller's L1 lookup said): a count of hits,
    /// unlike `TieredPrefixCache.Config.deviceBlocks`, a capacity.
    public var deviceBlocks: Int
    /// Where each following block is (`.host` or `.disk`), in prompt order: the load plan.
    public var locations: [Tier]
    /// The prefix stopped because loading the next block would be slower than recomputing it.
    public var limitedByAdmission: Bool

    /// An empty plan (to be filled by `KVTierManager.lookup(keys:deviceBlocks:maxBlocks:into:)`).
    public init() { self.init(deviceBlocks: 0, locations: [], limitedByAdmission: false) }

    init(deviceBlocks: Int, locations: [Tier], limitedByAdmission: Bool) {
        self.deviceBlocks = deviceBlocks
        self.locations = locations
        self.limitedByAdmission = limitedByAdmission
    }

    public var hostBlocks: Int { locations.count { $0 == .host } }
    public var diskBlocks: Int { locations.count { $0 == .disk } }
    /// Blocks to load from lower tiers.
    public var loadBlocks: Int { locations.count }
    /// Blocks of the prefix found anywhere.
    public var totalBlocks: Int { deviceBlocks + locations.count }
}
