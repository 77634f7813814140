import KVCache

/// One tier event as the tier manager records it: a block stored into or removed from a tier, flat (no
/// array per event), so recording allocates nothing once the manager's buffer has grown. `KVEvent`s
/// (one key each) are built from them only when drained through `drainEvents(into:)`.
public struct TierEvent: Sendable, Equatable {
    public enum Kind: Sendable { case stored, removed }
    public var kind: Kind
    public var key: BlockKey
    /// The parent a `stored` event names (nil: a first block; always nil for a removal).
    public var parent: BlockKey?
    public var tier: Tier

    public static func stored(_ key: BlockKey, parent: BlockKey?, tier: Tier) -> TierEvent {
        TierEvent(kind: .stored, key: key, parent: parent, tier: tier)
    }

    public static func removed(_ key: BlockKey, tier: Tier) -> TierEvent {
        TierEvent(kind: .removed, key: key, parent: nil, tier: tier)
    }

    /// The same event as a `KVEvent` of one key (one allocation: its key array).
    public func event(blockTokens: Int) -> KVEvent {
        switch kind {
        case .stored: .blockStored(keys: [key], parent: parent, blockTokens: blockTokens, tier: tier)
        case .removed: .blockRemoved(keys: [key], tier: tier)
        }
    }
}
