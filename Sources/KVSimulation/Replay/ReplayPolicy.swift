import KVCache

/// The eviction policies the sequential replay compares by name: the core's online policies and the
/// offline bound `belady`, which reads the replayed trace's future and so exists only here.
public enum ReplayPolicy: String, Sendable, CaseIterable {
    case lru, fifo, lfu, pgdsf
    /// `ProbationPolicy`: first uses on probation, returning keys protected.
    case probation
    /// `PGDSFPolicy` with a first use weighted by `Options.firstUseWeight`.
    case pgdsfProbation = "pgdsf-probation"
    /// `PredictiveMarkingPolicy` with its learned predictor, and with noise instead (the fallback).
    case marking
    case markingNoise = "marking-noise"
    case belady

    /// Options of the policies that take some.
    public struct Options: Sendable {
        /// `pgdsf-probation`: what a first use counts (plain PGDSF counts 1).
        public var firstUseWeight = 0.25
        public init(firstUseWeight: Double = 0.25) { self.firstUseWeight = firstUseWeight }
        /// The core's parameters with these options (the other tunables at their defaults).
        public var parameters: EvictionPolicyKind.Parameters { .init(firstUseWeight: firstUseWeight) }
    }

    /// At most the bytes of the policy's own state per pool block (its sketch, predictor tables and
    /// queues, each sized from the capacity at init, rounded up to powers of two), for the replay's
    /// memory check. `belady` keeps its table per trace key instead (the trace is in memory anyway).
    public var stateBytesPerBlock: Int {
        switch self {
        case .lru, .fifo, .lfu, .belady: return 0
        case .pgdsf: return 8
        case .probation, .pgdsfProbation: return 8 + 4 * 128  // 4 sketch rows of <= 128 counters per block
        case .marking, .markingNoise: return 4 * 128 + 32 * 30  // sketch + <= 32 predictor slots of 30 bytes
        }
    }

    /// Whether the policy reads the future (offline): it is a bound, never a candidate.
    public var isOffline: Bool { self == .belady }

    /// The core's policy of the same name, for the tiered and timed replays, the C ABI and the
    /// configuration (nil for `marking-noise` and `belady`, which exist only to measure).
    public var kind: EvictionPolicyKind? { EvictionPolicyKind(rawValue: rawValue) }

    /// Parses a comma-separated list ("lru,belady").
    /// - Throws: a message naming the unknown entry and the choices.
    public static func list(_ text: String) throws(ReplayPolicyError) -> [ReplayPolicy] {
        var out: [ReplayPolicy] = []
        for name in text.split(separator: ",", omittingEmptySubsequences: false) {
            guard let p = ReplayPolicy(rawValue: String(name)) else {
                throw ReplayPolicyError("unknown policy '\(name)' (choose from \(allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            out.append(p)
        }
        return out
    }

    /// A fresh policy for a pool of `capacity` blocks. `table` is called only for `belady` (the
    /// next uses of the requests to be replayed, as `SequentialReplay.nextUseTable` keys them).
    public func make(capacity: Int, cost: RecomputeCost, options: Options = Options(),
                     table: () -> NextUseTable) throws(KVCacheError) -> any EvictionPolicy {
        switch self {
        case .lru, .fifo, .lfu, .pgdsf, .probation, .pgdsfProbation, .marking:
            return try kind!.make(capacity: capacity, recomputeCost: cost, parameters: options.parameters)
        case .markingNoise: return PredictiveMarkingPolicy(capacity: capacity, noise: true)
        case .belady: return BeladyPolicy(table: table())
        }
    }
}

/// A policy list that names no known policy.
public struct ReplayPolicyError: Error, CustomStringConvertible, Sendable {
    public let description: String
    init(_ description: String) { self.description = description }
}
