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

/// Names the built-in policies, for configuration, the C ABI and the CLI.
public enum EvictionPolicyKind: String, Sendable, CaseIterable {
    case lru, fifo, lfu, pgdsf
    /// `ProbationPolicy`: first uses of a key on probation, returning keys protected.
    case probation
    /// `PGDSFPolicy` with a first use weighted by `Parameters.firstUseWeight`.
    case pgdsfProbation = "pgdsf-probation"
    /// `PredictiveMarkingPolicy`: marking with an online reuse predictor.
    case marking

    /// The tunables of the policies that have some; each policy reads only its own, and the defaults
    /// are those the policies were tuned with (README, "Eviction policies and the offline bound").
    public struct Parameters: Sendable, Equatable {
        /// `pgdsf-probation`: what a key's first use counts in the frequency, in 0...1 (plain PGDSF: 1).
        public var firstUseWeight = 0.25
        /// `probation`: pool-fulls of publications a protected block outlives probationary ones, >= 0.
        public var protection = 3.0
        /// `marking`: the reuse predictor's horizon in pool-fulls of publications, > 0.
        public var horizonFactor = 4.0

        public init(firstUseWeight: Double = 0.25, protection: Double = 3, horizonFactor: Double = 4) {
            self.firstUseWeight = firstUseWeight
            self.protection = protection
            self.horizonFactor = horizonFactor
        }

        /// Throws `invalidArgument` naming the first value out of range (NaN and infinities included).
        public func validate() throws(KVCacheError) {
            guard firstUseWeight.isFinite, (0...1).contains(firstUseWeight) else {
                throw .invalidArgument("firstUseWeight must be in 0...1, got \(firstUseWeight)")
            }
            guard protection.isFinite, protection >= 0, protection <= 1e6 else {
                throw .invalidArgument("protection must be in 0...1e6, got \(protection)")
            }
            guard horizonFactor.isFinite, horizonFactor > 0, horizonFactor <= 1e6 else {
                throw .invalidArgument("horizonFactor must be in (0, 1e6], got \(horizonFactor)")
            }
        }
    }

    /// Whether the policy prices recomputation, so it needs the caller's `RecomputeCost`.
    public var needsRecomputeCost: Bool { self == .pgdsf || self == .pgdsfProbation }

    /// A fresh policy for a cache of `capacity` blocks; `recomputeCost` prices blocks for `pgdsf` and
    /// `pgdsf-probation` (the others ignore it); `parameters` tune the policies that have some.
    /// - Throws: `.invalidArgument` for a pricing policy without a cost, or parameters out of range;
    ///   nothing is built then.
    public func make(capacity: Int = 0, recomputeCost: RecomputeCost?,
                     parameters: Parameters = Parameters()) throws(KVCacheError) -> any EvictionPolicy {
        try parameters.validate()
        if needsRecomputeCost && recomputeCost == nil {
            throw .invalidArgument("the \(rawValue) policy prices recomputation: give it a recompute cost")
        }
        switch self {
        case .lru: return LRUPolicy()
        case .fifo: return FIFOPolicy()
        case .lfu: return LFUPolicy()
        case .pgdsf: return PGDSFPolicy(capacity: capacity, cost: recomputeCost!)
        case .probation: return ProbationPolicy(capacity: capacity, protection: parameters.protection)
        case .pgdsfProbation:
            return PGDSFPolicy(capacity: capacity, cost: recomputeCost!, firstUseWeight: parameters.firstUseWeight)
        case .marking: return PredictiveMarkingPolicy(capacity: capacity, horizonFactor: parameters.horizonFactor)
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
