import KVCache

/// One benchmark workload: `prepare` puts the state in place (untimed), `run` is the timed body,
/// and `units` says how many blocks or tokens one `run` processes. Shared by `kvcache bench` and the
/// Benchmarks package so both measure the same code.
public protocol Workload: AnyObject {
    var units: Int { get }
    func prepare() throws
    func run() throws
}

extension Workload {
    /// Median seconds per unit over `repetitions` prepared runs.
    public func medianSecondsPerUnit(repetitions: Int) throws -> Double {
        try Measure.median(repetitions: repetitions, setup: prepare, run) / Double(units)
    }
}

/// Deterministic pseudo-random token ids below a 128k vocabulary.
func syntheticTokens(_ count: Int, seed: UInt64) -> [UInt32] {
    var generator = LCG(state: seed)
    return (0 ..< count).map { _ in UInt32(truncatingIfNeeded: generator.next()) % 128_000 }
}

/// Prefills a whole prompt as a server would and frees it, leaving its full blocks cached.
func prefillAndFree(_ m: KVCacheManager, _ id: SequenceID, _ tokens: [UInt32]) throws {
    try m.addSequence(id, prompt: tokens)
    let hit = try m.lookup(id)
    _ = try m.allocate(id, newTokens: tokens.count - hit.cachedTokens)
    try m.commit(id, computedTokens: tokens.count - hit.cachedTokens)
    try m.free(id)
}

/// Chained XXH3-128 keys of a prompt's full blocks; units are tokens.
public final class HashWorkload: Workload {
    let hasher: BlockHasher
    let tokens: [UInt32]
    var keys: [BlockKey] = []
    public init(promptTokens: Int = 32_768, blockTokens: Int = 16) {
        hasher = BlockHasher(blockTokens: blockTokens)
        tokens = syntheticTokens(promptTokens, seed: 1)
        keys.reserveCapacity(promptTokens / blockTokens)
    }
    public var units: Int { tokens.count }
    public func prepare() {}
    public func run() {
        keys.removeAll(keepingCapacity: true)
        tokens.withUnsafeBufferPointer { hasher.appendKeys(of: $0, parent: .zero, to: &keys) }
    }
}

/// `addSequence` + `lookup` + `free` of a fully cached prompt, hashing included; units are blocks.
public final class LookupWorkload: Workload {
    let m: KVCacheManager
    let tokens: [UInt32]
    var next: Int64 = 1
    public init(promptTokens: Int = 32_768, blockTokens: Int = 16) throws {
        m = try KVCacheManager(KVCacheConfig(blockTokens: blockTokens, capacityBlocks: promptTokens / blockTokens + 64))
        tokens = syntheticTokens(promptTokens, seed: 2) + [7]
        try prefillAndFree(m, SequenceID(0), tokens)
    }
    public var units: Int { (tokens.count - 1) / m.blockTokens }
    public func prepare() {}
    public func run() throws {
        let id = SequenceID(next)
        next += 1
        try m.addSequence(id, prompt: tokens)
        let hit = try m.lookup(id).cachedBlocks
        try m.free(id)
        precondition(hit == units, "the prompt must be fully cached")
    }
}

/// `BlockPool` allocate of 64 blocks and free of each, 100 times; units are blocks.
public final class AllocFreeWorkload: Workload {
    @exclusivity(unchecked) var pool: BlockPool
    @exclusivity(unchecked) var ids: [BlockID] = []
    public init() throws {
        pool = try BlockPool(capacity: 4096)
        ids.reserveCapacity(64)
    }
    public var units: Int { 64 * 100 }
    public func prepare() {}
    public func run() throws {
        for _ in 0 ..< 100 {
            try pool.allocate(64, into: &ids)
            for b in ids { try pool.releaseAndFreeIfUnheld(b) }
            ids.removeAll(keepingCapacity: true)
        }
    }
}

/// `commit` publishing every block of a freshly computed prompt; units are blocks.
public final class InsertWorkload: Workload {
    let m: KVCacheManager
    let tokens: [UInt32]
    var next: Int64 = 0
    var id: SequenceID?
    public init(promptTokens: Int = 32_768, blockTokens: Int = 16) throws {
        m = try KVCacheManager(KVCacheConfig(blockTokens: blockTokens, capacityBlocks: promptTokens / blockTokens + 64))
        tokens = syntheticTokens(promptTokens, seed: 3)
    }
    public var units: Int { tokens.count / m.blockTokens }
    public func prepare() throws {
        if let id { try m.free(id); try m.reset() }
        let id = SequenceID(next)
        next += 1
        try m.addSequence(id, prompt: tokens)
        _ = try m.lookup(id)
        _ = try m.allocate(id, newTokens: tokens.count)
        self.id = id
    }
    public func run() throws {
        try m.commit(id!, computedTokens: tokens.count)
    }
}

/// An allocation that must evict for (almost) every block it takes, from a bushy tree: 128 prompts
/// sharing a 4-block system prompt with 12 blocks each; units are evicted blocks. Each of
/// `evictionPolicies` can rank the victims (LRU by default).
public final class EvictWorkload: Workload {
    let m: KVCacheManager
    let system: [UInt32]
    let bodies: [[UInt32]]
    let fresh: [UInt32]
    var next: Int64 = 0
    var victim: SequenceID?
    var evictedBefore = 0
    public private(set) var units = 1
    /// The core's policies by name, as `kvcache bench core` reports them.
    public static let evictionPolicies = ["lru", "fifo", "lfu", "pgdsf", "probation", "pgdsf-probation", "marking"]

    /// A fresh policy named in `evictionPolicies` for `capacity` blocks. PGDSF's prices are only
    /// ordered by it, never reported, so any recompute cost will do: a per-token and an attention term.
    public static func policy(_ name: String, capacity: Int) throws -> any EvictionPolicy {
        let cost = try RecomputeCost(secondsPerToken: 1e-5, secondsPerContextPair: 1e-9)
        switch name {
        case "probation": return ProbationPolicy(capacity: capacity)
        case "pgdsf-probation": return PGDSFPolicy(capacity: capacity, cost: cost, firstUseWeight: 0.25)
        case "marking": return PredictiveMarkingPolicy(capacity: capacity)
        default:
            guard let kind = EvictionPolicyKind(rawValue: name) else { throw KVCacheError.invalidArgument("no policy named \(name)") }
            return try kind.make(capacity: capacity, recomputeCost: cost)
        }
    }

    public init(blockTokens: Int = 16, policy: String = "lru") throws {
        let capacity = 128 * 12 + 4
        m = try KVCacheManager(KVCacheConfig(blockTokens: blockTokens, capacityBlocks: capacity),
                               policy: try Self.policy(policy, capacity: capacity))
        system = syntheticTokens(4 * blockTokens, seed: 4)
        bodies = (0 ..< 128).map { syntheticTokens(12 * blockTokens, seed: 100 + UInt64($0)) }
        fresh = syntheticTokens((capacity - 4) * blockTokens, seed: 5)
        try prepare()
        try run()
    }
    public func prepare() throws {
        if let victim { try m.free(victim); try m.reset() }
        for body in bodies {
            try prefillAndFree(m, SequenceID(next), system + body + [1])
            next += 1
        }
        let id = SequenceID(next)
        next += 1
        try m.addSequence(id, prompt: fresh)
        _ = try m.lookup(id)
        evictedBefore = m.stats.evictedBlocks
        victim = id
    }
    public func run() throws {
        _ = try m.allocate(victim!, newTokens: fresh.count)
        units = m.stats.evictedBlocks - evictedBefore
        precondition(units > fresh.count / m.blockTokens / 2, "the workload must evict")
    }
}

/// The figures of `kvcache bench core`.
public struct CoreFigures: Sendable {
    /// Chained XXH3-128 block hashing, tokens per second on one core.
    public var hashTokensPerSecond: Double
    /// `addSequence` + `lookup` of a fully cached 32k-token prompt, hashing included, per block.
    public var lookupNanosPerBlock: Double
    /// `BlockPool` allocate + free, per block.
    public var allocFreeNanosPerBlock: Double
    /// `commit` publishing new blocks into the prefix index, per block.
    public var insertNanosPerBlock: Double
    /// `allocate` that evicts unheld cached leaves, per evicted block (LRU).
    public var evictNanosPerBlock: Double
    /// The same for each of `EvictWorkload.evictionPolicies`, in that order (LRU's included).
    public var evictNanosPerBlockByPolicy: [(policy: String, nanos: Double)]

    /// Runs every core workload (16-token blocks, 32k-token prompts) and keeps medians.
    public static func measure(repetitions: Int = 15) throws -> CoreFigures {
        CoreFigures(
            hashTokensPerSecond: 1 / (try HashWorkload().medianSecondsPerUnit(repetitions: repetitions)),
            lookupNanosPerBlock: try LookupWorkload().medianSecondsPerUnit(repetitions: repetitions) * 1e9,
            allocFreeNanosPerBlock: try AllocFreeWorkload().medianSecondsPerUnit(repetitions: repetitions) * 1e9,
            insertNanosPerBlock: try InsertWorkload().medianSecondsPerUnit(repetitions: repetitions) * 1e9,
            evictNanosPerBlock: try EvictWorkload().medianSecondsPerUnit(repetitions: repetitions) * 1e9,
            evictNanosPerBlockByPolicy: try EvictWorkload.evictionPolicies.map { name in
                (name, try EvictWorkload(policy: name).medianSecondsPerUnit(repetitions: repetitions) * 1e9)
            })
    }
}
