import KVCache

/// Which tokens of reused chunks an engine recomputes, as pure functions over scores the engine measures:
/// CacheBlend's high-KV-deviation (HKVD) tokens, Cache-Craft's cache-context impact (CCI), and uniform
/// random tokens at the same budget (the ablation).
///
/// Nothing here knows a model. HKVD: the engine recomputes every candidate at its check layer, scores each
/// by `deviation` between the cached and the recomputed K or V row, and keeps `topScores`. CCI: the engine
/// records, when it caches a chunk, how much attention each token paid outside the chunk (`ChunkStore`
/// keeps it per variant); `contextImpactBudgets` splits a prompt's budget over its chunks in proportion to
/// their impact, and `topScores` picks each chunk's tokens. Every function is deterministic; `topScores`
/// is O(n log n), `random` O(n), `allocate` O(parts log parts); each allocates only its result and one
/// scratch array.
public enum RecomputeSelection {
    /// The tokens to recompute out of `tokens` at `ratio`: ceil(ratio x tokens), clamped to 0...tokens.
    /// - Throws: `.invalidArgument` for a ratio outside 0...1 or a negative count.
    public static func budget(ratio: Double, tokens: Int) throws(ChunkError) -> Int {
        guard ratio.isFinite, (0 ... 1).contains(ratio) else { throw .invalidArgument("recompute ratio \(ratio) outside 0...1") }
        guard tokens >= 0 else { throw .invalidArgument("negative token count \(tokens)") }
        return min(tokens, Int((ratio * Double(tokens)).rounded(.up)))
    }

    /// Indices of the `budget` largest scores, ascending. Ties go to the lower index; NaN ranks below every
    /// number. `budget` is clamped to 0...count.
    public static func topScores(_ scores: UnsafeBufferPointer<Float>, budget: Int) -> [Int] {
        let k = min(max(budget, 0), scores.count)
        guard k > 0 else { return [] }
        guard k < scores.count else { return Array(0 ..< scores.count) }
        var order = Array(0 ..< scores.count)
        order.sort { a, b in
            let x = scores[a], y = scores[b]
            if x.isNaN || y.isNaN { return x.isNaN == y.isNaN ? a < b : y.isNaN }
            return x > y || (x == y && a < b)
        }
        var chosen = Array(order[0 ..< k])
        chosen.sort()
        return chosen
    }

    /// `topScores` over an array.
    public static func topScores(_ scores: [Float], budget: Int) -> [Int] {
        scores.withUnsafeBufferPointer { topScores($0, budget: budget) }
    }

    /// `budget` distinct indices of `0 ..< count` drawn uniformly without replacement (partial
    /// Fisher-Yates from `rng`), ascending. `budget` is clamped to 0...count.
    public static func random(count: Int, budget: Int, rng: inout SplitMix64) -> [Int] {
        let k = min(max(budget, 0), max(count, 0))
        guard k > 0 else { return [] }
        var offsets = Array(0 ..< count)
        for i in 0 ..< k {
            let j = i + Int(rng.next() % UInt64(count - i))
            offsets.swapAt(i, j)
        }
        var chosen = Array(offsets[0 ..< k])
        chosen.sort()
        return chosen
    }

    /// CacheBlend's KV deviation of one token: the squared L2 distance between its cached and its
    /// recomputed K (or V) row of `count` floats. O(count), no allocation.
    @inline(__always)
    public static func deviation(_ cached: UnsafePointer<Float>, _ recomputed: UnsafePointer<Float>, count: Int) -> Float {
        var sum: Float = 0
        for i in 0 ..< count {
            let d = cached[i] - recomputed[i]
            sum += d * d
        }
        return sum
    }

    /// Splits `budget` over parts in proportion to `weights`, each part at most its capacity (largest
    /// remainders first, ties to the lower index; what a full part cannot take goes to the others by
    /// weight, then by index). The parts sum to min(budget, sum of capacities).
    /// - Throws: `.invalidArgument` for different lengths, a negative budget or capacity, or a weight that
    ///   is negative or not finite.
    public static func allocate(_ budget: Int, weights: [Double], capacities: [Int]) throws(ChunkError) -> [Int] {
        guard weights.count == capacities.count else { throw .invalidArgument("\(weights.count) weights for \(capacities.count) parts") }
        guard budget >= 0, capacities.allSatisfy({ $0 >= 0 }) else { throw .invalidArgument("negative budget or capacity") }
        guard weights.allSatisfy({ $0.isFinite && $0 >= 0 }) else { throw .invalidArgument("weights must be finite and >= 0") }
        var parts = Array(repeating: 0, count: capacities.count)
        var left = min(budget, capacities.reduce(0, +))
        while left > 0 {
            // Parts with room share what is left; with no weight among them, they share it evenly.
            let open = capacities.indices.filter { parts[$0] < capacities[$0] }
            let total = open.reduce(0.0) { $0 + weights[$1] }
            let share = { (i: Int) -> Double in total > 0 ? weights[i] / total : 1 / Double(open.count) }
            var given = 0
            var remainders: [(Double, Int)] = []
            for i in open {
                let exact = Double(left) * share(i)
                let whole = min(Int(exact.rounded(.down)), capacities[i] - parts[i])
                parts[i] += whole
                given += whole
                if parts[i] < capacities[i] { remainders.append((exact - exact.rounded(.down), i)) }
            }
            left -= given
            if given == 0 {
                // Every share rounds down to zero: one token each to the largest remainders.
                remainders.sort { $0.0 > $1.0 || ($0.0 == $1.0 && $0.1 < $1.1) }
                for (_, i) in remainders where left > 0 { parts[i] += 1; left -= 1 }
            }
        }
        return parts
    }

    /// Cache-Craft's split of a prompt's recompute budget over its reused chunks: chunk i gets a share in
    /// proportion to `impacts[i] x tokens[i]` (its cache-context impact over its tokens), at most its
    /// tokens. A chunk whose impact is zero (or unmeasured, passed as zero) is reused as it is unless every
    /// chunk is; a chunk whose share reaches its size is recomputed in full.
    public static func contextImpactBudgets(_ budget: Int, impacts: [Float], tokens: [Int]) throws(ChunkError) -> [Int] {
        guard impacts.count == tokens.count else { throw .invalidArgument("\(impacts.count) impacts for \(tokens.count) chunks") }
        return try allocate(budget, weights: zip(impacts, tokens).map { Double($0) * Double($1) }, capacities: tokens)
    }
}
