import Foundation
import KVData
import KVScheduler

/// Options of `BoostedStumpsTrainer`.
public struct StumpTrainingOptions: Sendable {
    public var hashing = FeatureHashingConfig()
    /// Boosting rounds (one stump each).
    public var rounds = 400
    /// Step size applied to each stump's leaf values.
    public var shrinkage = 0.1
    /// Fewest examples on each side of a split.
    public var minLeaf = 20
    public var reserveQuantile = 0.9
    public var buckets = LengthBuckets.standard

    public init() {}
}

/// The alternative to the bucketed logistic regression: gradient-boosted decision stumps on the
/// presence of hashed features, regressing `log(1 + length)` with squared loss.
///
/// Each stump tests one feature slot: `present` or `absent` adds its leaf value. The prediction is
/// `exp(F) - 1`; the reserve adds the training residuals' `reserveQuantile` to `F`. It is kept for
/// comparison (`kvcache predict compare`): on CASTILLO and ShareGPT the logistic regression is
/// both more accurate and gives calibrated quantiles per prompt, so it is the shipped text predictor.
public final class BoostedStumpsPredictor: OutputLengthPredictor {
    public let hashing: FeatureHashingConfig
    public let buckets: LengthBuckets
    /// `F` for an input without any split feature: the base value plus every stump's absent leaf.
    public let intercept: Double
    /// Per slot, the sum over stumps on that slot of (present leaf - absent leaf); `1 << hashBits` entries.
    public let deltas: [Float]
    /// The `reserveQuantile` of the training residuals in log space.
    public let residualQuantile: Double
    public let rounds: Int
    private let hasher: FeatureHasher
    private let features: FeatureVector
    private var stamps: [UInt32]
    private var generation: UInt32 = 0

    init(hashing: FeatureHashingConfig, buckets: LengthBuckets, intercept: Double, deltas: [Float],
         residualQuantile: Double, rounds: Int) {
        self.hashing = hashing
        self.buckets = buckets
        self.intercept = intercept
        self.deltas = deltas
        self.residualQuantile = residualQuantile
        self.rounds = rounds
        hasher = FeatureHasher(config: hashing)
        features = FeatureVector(config: hashing)
        stamps = [UInt32](repeating: 0, count: deltas.count)
    }

    /// O(F) for F features; allocates nothing (a generation stamp per slot skips repeated features).
    public func predict(_ input: PredictionInput) -> LengthPrediction {
        let f = score(input)
        let limit = max(1, input.maxTokens)
        let e = min(limit, max(1, Int(expm1(f).rounded())))
        let r = min(limit, max(e, Int(expm1(f + residualQuantile).rounded(.up))))
        return LengthPrediction(expected: e, reserve: r, bucket: buckets.bucket(of: Double(e)))
    }

    /// Stumps are fixed once trained; true lengths are not used.
    public func observe(_ input: PredictionInput, actualOutput: Int) {}

    func score(_ input: PredictionInput) -> Double {
        hasher.extract(input, into: features)
        generation &+= 1
        if generation == 0 {
            for i in stamps.indices { stamps[i] = 0 }
            generation = 1
        }
        var f = intercept
        let g = generation
        stamps.withUnsafeMutableBufferPointer { s in
            deltas.withUnsafeBufferPointer { d in
                for i in 0..<features.count {
                    let slot = Int(features.indices[i])
                    if s[slot] != g { s[slot] = g; f += Double(d[slot]) }
                }
            }
        }
        return f
    }
}

/// Trains `BoostedStumpsPredictor`.
///
/// - Complexity: O(rounds x (nnz + 2^hashBits)) time for nnz distinct (example, slot) pairs;
///   O(nnz) memory for the examples' slot lists.
public enum BoostedStumpsTrainer {
    /// Most boosting rounds.
    public static let maxRounds = 100_000

    public static func train(_ examples: [LengthExample], options: StumpTrainingOptions = StumpTrainingOptions(),
                             progress: ((Int, Double) -> Void)? = nil) throws(LengthTrainingError) -> BoostedStumpsPredictor {
        guard !examples.isEmpty else { throw .noExamples }
        guard options.hashing.isValid, (1...maxRounds).contains(options.rounds), options.shrinkage > 0,
              options.shrinkage <= 1, options.minLeaf >= 1, options.reserveQuantile > 0, options.reserveQuantile < 1 else {
            throw .invalidOption("rounds in 1...\(maxRounds), shrinkage in (0, 1], minLeaf >= 1, quantile in (0, 1) are required")
        }
        let slots = 1 << options.hashing.hashBits
        // Distinct slots of each example, CSR.
        let hasher = FeatureHasher(config: options.hashing)
        let vector = FeatureVector(config: options.hashing)
        var stamp = [Int32](repeating: -1, count: slots)
        var rowStart = [0]
        var columns: [Int32] = []
        for (j, example) in examples.enumerated() {
            hasher.extract(example.input, into: vector)
            for i in 0..<vector.count {
                let slot = Int(vector.indices[i])
                if stamp[slot] != Int32(j) { stamp[slot] = Int32(j); columns.append(Int32(slot)) }
            }
            rowStart.append(columns.count)
        }
        let n = examples.count
        let y = examples.map { log1p(max(0, $0.target)) }
        let base = y.reduce(0, +) / Double(n)
        var f = [Double](repeating: base, count: n)
        var intercept = base
        var deltas = [Double](repeating: 0, count: slots)
        var sums = [Double](repeating: 0, count: slots)
        var counts = [Int32](repeating: 0, count: slots)
        let minLeaf = Int32(options.minLeaf)

        for round in 1...options.rounds {
            for i in 0..<slots { sums[i] = 0; counts[i] = 0 }
            var total = 0.0
            for j in 0..<n {
                let r = y[j] - f[j]
                total += r
                for c in rowStart[j]..<rowStart[j + 1] {
                    let slot = Int(columns[c])
                    sums[slot] += r
                    counts[slot] += 1
                }
            }
            var best = -1
            var bestGain = 0.0
            let nAll = Double(n)
            for slot in 0..<slots where counts[slot] >= minLeaf && Int32(n) - counts[slot] >= minLeaf {
                let np = Double(counts[slot])
                let sp = sums[slot]
                let gain = sp * sp / np + (total - sp) * (total - sp) / (nAll - np) - total * total / nAll
                if gain > bestGain { bestGain = gain; best = slot }
            }
            guard best >= 0 else { break }
            let np = Double(counts[best])
            let present = options.shrinkage * sums[best] / np
            let absent = options.shrinkage * (total - sums[best]) / (nAll - np)
            intercept += absent
            deltas[best] += present - absent
            for j in 0..<n {
                var has = false
                for c in rowStart[j]..<rowStart[j + 1] where Int(columns[c]) == best { has = true; break }
                f[j] += has ? present : absent
            }
            if let progress, round % 50 == 0 {
                var sq = 0.0
                for j in 0..<n { sq += (y[j] - f[j]) * (y[j] - f[j]) }
                progress(round, sq / nAll)
            }
        }
        let residuals = (0..<n).map { y[$0] - f[$0] }.sorted()
        return BoostedStumpsPredictor(hashing: options.hashing, buckets: options.buckets, intercept: intercept,
                                      deltas: deltas.map { Float($0) },
                                      residualQuantile: TextLengthTrainer.quantile(residuals, options.reserveQuantile),
                                      rounds: options.rounds)
    }
}
