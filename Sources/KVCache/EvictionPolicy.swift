/// What a policy may read about a cached block when it sets the block's eviction priority.
public struct PolicyNode: Sendable {
    /// The block (and tree node) id.
    public var block: BlockID
    /// Blocks from the root: 1 for a first block.
    public var depth: Int
    /// The block's chained key.
    public var key: BlockKey
    /// Tokens the block holds.
    public var tokens: Int
    /// The cache's logical clock: advances once per mutating manager call.
    public var clock: UInt64
}

/// Decides which unreferenced cached leaf is evicted first: the one with the lowest priority
/// (ties: deeper block first, then lower block id). The prefix index calls it on insert, on access
/// (a lookup hit pins the block, or its last holder releases it) and on eviction, and keeps the
/// evictable leaves in a heap ordered by the returned priorities, so a policy is O(1) per call and
/// the index O(log n) per update. Policies plug in without touching the tree (LRU, FIFO, LFU here;
/// the cost- and frequency-aware PGDSF in `PGDSFPolicy`).
public protocol EvictionPolicy: AnyObject {
    /// A short name for reports ("lru").
    var name: String { get }
    /// Priority of a block just published to the cache.
    func priorityOnInsert(_ node: PolicyNode) -> Double
    /// Priority of a block that was just used: pinned by a prefix hit, or released by its last holder.
    func priorityOnAccess(_ node: PolicyNode, previous: Double, kind: AccessKind) -> Double
    /// Called when a block leaves the cache (eviction or reset), with its last priority.
    func didEvict(_ node: PolicyNode, priority: Double)
    /// Forget all state (the cache was cleared).
    func reset()
    /// True when every unheld block's priority is the clock of its release, so release order is
    /// priority order and the index can keep an O(1) list instead of a heap (LRU). Such a policy's
    /// priorities are the clock by contract, so the index stamps them itself and never calls
    /// `priorityOnInsert` or `priorityOnAccess`. Default false.
    var ordersByRelease: Bool { get }
    /// False when `didEvict` does nothing, so the index need not call it (LRU, FIFO). Default true.
    var observesEvictions: Bool { get }
}

extension EvictionPolicy {
    public func didEvict(_ node: PolicyNode, priority: Double) {}
    public func reset() {}
    public var ordersByRelease: Bool { false }
    public var observesEvictions: Bool { true }
}

/// Why a cached block was touched.
public enum AccessKind: Sendable {
    /// A lookup matched it and a sequence pinned it.
    case hit
    /// Its last holder let go of it (the end of its most recent use).
    case release
}

/// Names the built-in policies, for configuration and the CLI.
public enum EvictionPolicyKind: String, Sendable, CaseIterable {
    case lru, fifo, lfu, pgdsf
    /// Whether the policy prices recomputation, so it needs the caller's `RecomputeCost`.
    public var needsRecomputeCost: Bool { self == .pgdsf }

    /// A fresh policy for a cache of `capacity` blocks; `recomputeCost` prices blocks for `pgdsf`
    /// (the others ignore it).
    /// - Throws: `.invalidArgument` for `pgdsf` without a cost; nothing is built then.
    public func make(capacity: Int = 0, recomputeCost: RecomputeCost?) throws(KVCacheError) -> any EvictionPolicy {
        switch self {
        case .lru: return LRUPolicy()
        case .fifo: return FIFOPolicy()
        case .lfu: return LFUPolicy()
        case .pgdsf:
            guard let recomputeCost else {
                throw .invalidArgument("the pgdsf policy prices recomputation: give it a recompute cost")
            }
            return PGDSFPolicy(capacity: capacity, cost: recomputeCost)
        }
    }
}

/// Least recently used: priority = the logical time of the last insert or access. Blocks stamped
/// in the same call tie and go tail-first, deepest first.
public final class LRUPolicy: EvictionPolicy {
    public init() {}
    public var name: String { "lru" }
    public var ordersByRelease: Bool { true }
    public var observesEvictions: Bool { false }
    public func priorityOnInsert(_ node: PolicyNode) -> Double { Double(node.clock) }
    public func priorityOnAccess(_ node: PolicyNode, previous: Double, kind: AccessKind) -> Double {
        Double(node.clock)
    }
}

/// First in, first out: priority = insertion time; hits do not refresh it.
public final class FIFOPolicy: EvictionPolicy {
    public init() {}
    public var name: String { "fifo" }
    public var observesEvictions: Bool { false }
    public func priorityOnInsert(_ node: PolicyNode) -> Double { Double(node.clock) }
    public func priorityOnAccess(_ node: PolicyNode, previous: Double, kind: AccessKind) -> Double {
        previous
    }
}

/// Least frequently used with LRU aging: priority = hits + clock x 2^-32, so frequency dominates and
/// recency breaks ties; a block evicted at frequency f lifts the floor (as in GDSF's clock) so new
/// blocks are not evicted before stale frequent ones forever.
public final class LFUPolicy: EvictionPolicy {
    private var floor = 0.0
    public init() {}
    public var name: String { "lfu" }
    public func priorityOnInsert(_ node: PolicyNode) -> Double { floor + 1 + Double(node.clock) * 0x1p-32 }
    public func priorityOnAccess(_ node: PolicyNode, previous: Double, kind: AccessKind) -> Double {
        (previous.rounded(.down) + (kind == .hit ? 1 : 0)) + Double(node.clock) * 0x1p-32
    }
    public func didEvict(_ node: PolicyNode, priority: Double) { floor = max(floor, priority.rounded(.down)) }
    public func reset() { floor = 0 }
}
