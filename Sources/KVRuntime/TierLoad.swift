/// Where the prompt blocks a `PrefixPlanner.load` took from the tiers came from.
public struct TierLoad: Sendable, Equatable {
    public var hostBlocks = 0
    public var diskBlocks = 0
    /// Planned blocks that failed to load (vanished or corrupt) and are computed instead.
    public var failedBlocks = 0
    /// Tokens loaded (whole blocks).
    public var tokens = 0

    public init() {}

    /// Blocks loaded, from host and disk.
    public var loadedBlocks: Int { hostBlocks + diskBlocks }
}
