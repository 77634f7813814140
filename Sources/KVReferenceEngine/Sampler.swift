import Foundation
import KVCache

/// Picks the next token from logits: greedy (`temperature == 0`) or seeded sampling with temperature
/// and top-k. The same seed, settings and logits always give the same tokens, on every machine
/// (SplitMix64 random numbers, no global state).
///
/// Cost O(vocab + k log k) per token; the candidate buffer is kept, so steady state allocates nothing.
public struct Sampler: Sendable {
    public var temperature: Float
    public var topK: Int
    private var random: SplitMix64
    private var candidates: [(id: Int, logit: Float)] = []

    /// - Parameters:
    ///   - temperature: 0 for greedy; otherwise logits are divided by it before the softmax.
    ///   - topK: sampling considers only the `topK` most likely tokens (at least 1).
    ///   - seed: the random stream's start.
    public init(temperature: Float = 0, topK: Int = 40, seed: UInt64 = 0) {
        self.temperature = max(0, temperature)
        self.topK = max(1, topK)
        self.random = SplitMix64(seed: seed)
    }

    /// Greedy decoding.
    public static var greedy: Sampler { Sampler() }

    /// The index of the largest logit (lowest index on ties). O(count).
    public static func argmax(_ logits: UnsafeBufferPointer<Float>) -> Int {
        var best = 0
        var bestValue = -Float.infinity
        for i in 0 ..< logits.count where logits[i] > bestValue { best = i; bestValue = logits[i] }
        return best
    }

    /// The next token for `logits`.
    public mutating func sample(_ logits: UnsafeBufferPointer<Float>) -> UInt32 {
        guard temperature > 0, logits.count > 1 else { return UInt32(Self.argmax(logits)) }
        // Keep the top k in a small sorted buffer (descending), then draw from their softmax.
        let k = min(topK, logits.count)
        candidates.removeAll(keepingCapacity: true)
        for i in 0 ..< logits.count {
            let v = logits[i]
            if candidates.count == k {
                if v <= candidates[k - 1].logit { continue }
                candidates.removeLast()
            }
            var at = candidates.count
            while at > 0 && candidates[at - 1].logit < v { at -= 1 }
            candidates.insert((i, v), at: at)
        }
        let top = candidates[0].logit
        var total: Double = 0
        for c in candidates { total += exp(Double((c.logit - top) / temperature)) }
        let u = Double(random.next() >> 11) / Double(1 << 53) * total
        var acc: Double = 0
        for c in candidates {
            acc += exp(Double((c.logit - top) / temperature))
            if u < acc { return UInt32(c.id) }
        }
        return UInt32(candidates[candidates.count - 1].id)
    }

    public mutating func sample(_ logits: [Float]) -> UInt32 {
        logits.withUnsafeBufferPointer { sample($0) }
    }
}
