import KVCache
import KVHybrid

/// A synthetic hybrid-model request stream: `prompts` shared system prompts (1,024-4,096 tokens, the
/// first ones more popular), each request one of them plus a distinct 64-511-token user turn, with a
/// 32-287-token output. Deterministic from the seed.
public struct HybridStream: Sendable {
    public var requests: [(input: [Int32], sequence: [Int32])] = []

    public init(requests count: Int, prompts: Int = 6, seed: UInt64 = 5) {
        var rng = SplitMix64(seed: seed)
        let heads: [[Int32]] = (0 ..< prompts).map { _ in
            (0 ..< 1024 + Int(rng.next() % 3072)).map { _ in Int32(rng.next() % 32_000) }
        }
        for _ in 0 ..< count {
            // Popularity 1/(k+1): draw a prompt by rejection.
            var k = 0
            repeat { k = Int(rng.next() % UInt64(prompts)) } while rng.next() % UInt64(k + 1) != 0
            let input = heads[k] + (0 ..< 64 + Int(rng.next() % 448)).map { _ in Int32(rng.next() % 32_000) }
            let output = (0 ..< 32 + Int(rng.next() % 256)).map { _ in Int32(rng.next() % 32_000) }
            requests.append((input, input + output))
        }
    }
}

/// `HybridCache.lookup` of every request of a stream on a cache warmed with the same stream (hits,
/// partial edges and branches as in serving); units are requests.
public final class HybridLookupWorkload: Workload {
    var cache: HybridCache
    let stream: HybridStream
    public init(policy: HybridPolicy, capacityBytes: Int64, requests: Int = 512) {
        stream = HybridStream(requests: requests)
        cache = HybridCache(model: .hybrid7B, policy: policy, capacityBytes: capacityBytes)
        for r in stream.requests { r.sequence.withUnsafeBufferPointer { try? cache.insert($0) } }
    }
    public var units: Int { stream.requests.count }
    public func prepare() {}
    public func run() {
        var hits = 0
        for r in stream.requests { hits &+= r.input.withUnsafeBufferPointer { cache.lookup($0).hit } }
        precondition(hits >= 0)
    }
}

/// `HybridCache.insert` (dry run, eviction when full, insert) of every request of a stream into a cache
/// that holds about a quarter of it, rebuilt untimed before each run; units are requests.
public final class HybridInsertWorkload: Workload {
    var cache: HybridCache
    let policy: HybridPolicy
    let capacityBytes: Int64
    let stream: HybridStream
    public init(policy: HybridPolicy, capacityBytes: Int64, requests: Int = 512) {
        stream = HybridStream(requests: requests)
        self.policy = policy
        self.capacityBytes = capacityBytes
        cache = HybridCache(model: .hybrid7B, policy: policy, capacityBytes: capacityBytes)
    }
    public var units: Int { stream.requests.count }
    public func prepare() {
        cache = HybridCache(model: .hybrid7B, policy: policy, capacityBytes: capacityBytes)
    }
    public func run() {
        for r in stream.requests { r.sequence.withUnsafeBufferPointer { try? cache.insert($0) } }
    }
}

/// Median lookup and insert costs per request of each radix-tree policy on `HybridStream`.
public struct HybridFigures: Sendable {
    public var policy: HybridPolicy
    public var lookupSecondsPerRequest: Double
    public var insertSecondsPerRequest: Double
    public var capacityBytes: Int64

    /// A budget of about 40 of the stream's requests (checkpoints and KV of the hybrid 7B).
    public static let defaultCapacity: Int64 = 40 * (HybridModel.hybrid7B.checkpointBytes + 2_500 * HybridModel.hybrid7B.kvBytesPerToken)

    public static func measure(policy: HybridPolicy, repetitions: Int, requests: Int = 512,
                               capacityBytes: Int64 = defaultCapacity) throws -> HybridFigures {
        let lookup = HybridLookupWorkload(policy: policy, capacityBytes: capacityBytes, requests: requests)
        let insert = HybridInsertWorkload(policy: policy, capacityBytes: capacityBytes, requests: requests)
        return HybridFigures(policy: policy, lookupSecondsPerRequest: try lookup.medianSecondsPerUnit(repetitions: repetitions),
                             insertSecondsPerRequest: try insert.medianSecondsPerUnit(repetitions: repetitions),
                             capacityBytes: capacityBytes)
    }
}
