import KVCache
import KVPlan

/// The one rule that decides whether a block is worth loading from a lower tier (and so worth storing
/// there): load it when `load(tier, bytes) x safetyFactor <= recompute seconds of the block at its depth`.
///
/// - Load: a per-tier table keyed by `Tier` (host, disk, remote). Each row is a fixed latency plus bytes
///   over a bandwidth, filled from the store's cost hint (`KVBlockStore.costHint`) or the caller, and
///   moved by measured transfers (a moving average). A block below host travels through host, so a disk
///   or remote load is its own row plus the host row. A tier with no row is never loaded from.
/// - Recompute: the caller's `RecomputeCost` (seconds per token plus per attended token pair), priced
///   for a block of `blockTokens` tokens after `depth` earlier blocks, so a deep block (the dearest to
///   recompute, as PGDSF knows) is admitted where a first block may not be. Without a cost every tier
///   with a row is used.
///
/// O(1) per question, no allocation. A value type: the tier manager keeps it under its lock.
public struct LoadOrRecompute: Sendable, Equatable {
    /// One tier's load cost: `latencySeconds + bytes / bytesPerSecond`.
    public struct Link: Sendable, Equatable {
        public var latencySeconds: Double
        public var bytesPerSecond: Double
        public init(latencySeconds: Double, bytesPerSecond: Double) {
            self.latencySeconds = latencySeconds
            self.bytesPerSecond = bytesPerSecond
        }

        /// Seconds to move `bytes` over this link.
        public func seconds(bytes: Int) -> Double { latencySeconds + Double(bytes) / bytesPerSecond }
    }

    /// The host -> device link assumed before anything was measured.
    public static let defaultHost = Link(latencySeconds: 5e-6, bytesPerSecond: 10e9)

    /// The cost of recomputing KV, or nil to load from every tier that has a row.
    public var recompute: RecomputeCost?
    /// Loads must be this many times faster than recomputation (1 = break even).
    public var safetyFactor = 1.0
    /// Weight of a new observation in the moving average.
    public var smoothing = 0.2
    /// Rows for `.host`, `.disk`, `.remote` (index `rawValue - 1`).
    private var links: [Link?]

    /// - Parameters:
    ///   - host: the host -> device link.
    ///   - disk, remote: the store -> host links; nil until a store's cost hint fills them.
    public init(recompute: RecomputeCost? = nil, host: Link = Self.defaultHost, disk: Link? = nil,
                remote: Link? = nil) {
        self.recompute = recompute
        links = [host, disk, remote]
    }

    /// The row of `tier` (nil for `.device` and for a tier without one).
    public func link(_ tier: Tier) -> Link? { tier == .device ? nil : links[Int(tier.rawValue) - 1] }

    /// Sets the row of `tier` (not `.device`).
    public mutating func setLink(_ tier: Tier, _ link: Link?) {
        precondition(tier != .device, "the device tier has no load cost")
        links[Int(tier.rawValue) - 1] = link
    }

    /// Fills `tier`'s row from a store's cost hint when the caller gave none.
    public mutating func fill(_ tier: Tier, from hint: Link) {
        if link(tier) == nil { setLink(tier, hint) }
    }

    /// Seeds the estimates from a start-up measurement: the host copy speed, and for `store`, its
    /// device read then decompression in sequence (1/bw = 1/read + 1/decode), `read` from its cost hint.
    public mutating func seed(hostBytesPerSecond host: Double?, store: Tier, readBytesPerSecond read: Double,
                              decodeBytesPerSecond decode: Double?) {
        if let host, host > 0 { links[0]?.bytesPerSecond = host }
        if let decode, decode > 0 { links[Int(store.rawValue) - 1]?.bytesPerSecond = 1 / (1 / read + 1 / decode) }
    }

    /// Folds one measured transfer into `tier`'s bandwidth estimate.
    public mutating func observe(tier: Tier, bytes: Int, nanos: UInt64) {
        guard bytes > 0, nanos > 0, tier != .device, let row = link(tier) else { return }
        let bw = Double(bytes) / (Double(nanos) * 1e-9)
        links[Int(tier.rawValue) - 1]?.bytesPerSecond = row.bytesPerSecond + smoothing * (bw - row.bytesPerSecond)
    }

    /// Expected seconds to load one block of `bytes` from `tier` into the device (infinite for a tier
    /// without a row).
    public func loadSeconds(tier: Tier, bytes: Int) -> Double {
        if tier == .device { return 0 }
        guard let row = link(tier), let host = link(.host) else { return .infinity }
        return tier == .host ? row.seconds(bytes: bytes) : row.seconds(bytes: bytes) + host.seconds(bytes: bytes)
    }

    /// Modelled seconds to recompute a block of `layout` after `depth` earlier blocks (nil without a cost).
    public func recomputeSeconds(layout: KVGeometry, depth: Int) -> Double? {
        recompute?.seconds(tokens: layout.blockTokens, contextBefore: max(0, depth) * layout.blockTokens)
    }

    /// Whether loading a block of `layout` from `tier`, with `depth` blocks before it in its prefix,
    /// beats recomputing it. Where the depth is not known (a store decision), 0: the cheapest recompute,
    /// so the rule errs on the side of not storing.
    public func worthLoading(tier: Tier, layout: KVGeometry, depth: Int = 0) -> Bool {
        worthLoading(tier: tier, bytes: layout.bytesPerBlock, tokens: layout.blockTokens,
                     contextBefore: max(0, depth) * layout.blockTokens)
    }

    /// The rule itself: whether loading `bytes` from `tier` beats recomputing `tokens` tokens that follow
    /// `contextBefore` cached ones.
    public func worthLoading(tier: Tier, bytes: Int, tokens: Int, contextBefore: Int) -> Bool {
        if tier == .device { return true }
        guard link(tier) != nil, tier == .host || link(.host) != nil else { return false }
        guard let recompute else { return true }
        return loadSeconds(tier: tier, bytes: bytes) * safetyFactor
            <= recompute.seconds(tokens: tokens, contextBefore: contextBefore)
    }
}
