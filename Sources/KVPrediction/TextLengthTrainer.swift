import KVCache
import Foundation
import KVData
import KVScheduler

/// Options of `TextLengthTrainer`.
public struct TextTrainingOptions: Sendable {
    public var hashing = FeatureHashingConfig()
    public var buckets = LengthBuckets.standard
    /// Passes over the (shuffled) training examples.
    public var epochs = 6
    /// AdaGrad step size.
    public var learningRate: Float = 0.2
    /// L2 penalty on the weights an example touches.
    public var l2: Float = 1e-6
    /// Seed of the shuffling order.
    public var seed: UInt64 = 42
    public var reserveQuantile = 0.9
    public var expectedStatistic = ExpectedStatistic.median
    /// The quantile reported as expected with `ExpectedStatistic.quantile`.
    public var expectedQuantile = 0.5
    /// Trains towards the distribution of an example's samples over the buckets (CASTILLO has 10
    /// samples per prompt and model) instead of the bucket of its target.
    public var softLabels = true
    /// Weighs examples so that every source data set (`LengthExample.source`) counts the same in
    /// the loss, whatever its size: a small source is not drowned by large ones. Examples without a
    /// source form one source of their own.
    public var balanceSources = false

    public init() {}
}

/// Why training could not run.
public enum LengthTrainingError: Error, Equatable, CustomStringConvertible {
    case noExamples
    case invalidOption(String)

    public var description: String {
        switch self {
        case .noExamples: "no training examples"
        case let .invalidOption(what): "invalid training option: \(what)"
        }
    }
}

/// Progress of one training epoch.
public struct TrainingProgress: Sendable {
    public var epoch: Int
    /// Mean cross-entropy over the epoch's examples.
    public var meanLoss: Double
    public var seconds: Double
}

/// Trains a `TextLengthModel`: multinomial logistic regression over length buckets with AdaGrad.
///
/// Each step extracts the example's features again (memory stays O(examples) rather than
/// O(features)), computes the softmax, and updates only the rows of the features present.
/// - Complexity: O(epochs x sum of F x K) time for F features per example and K buckets;
///   O(2^hashBits x K) memory for the weights and AdaGrad accumulators.
public enum TextLengthTrainer {
    /// Most passes over the data.
    public static let maxEpochs = 10_000
    /// Largest learning rate and L2 penalty.
    public static let maxLearningRate: Float = 1e6

    /// Refuses options that would not train a loadable model: a hashing configuration or bucket
    /// count over `TextLengthModelFile`'s limits, epochs outside `1...maxEpochs`, a learning rate
    /// outside `(0, maxLearningRate]`, an L2 penalty outside `[0, maxLearningRate]` (non-finite
    /// values included), quantiles outside (0, 1). O(1).
    public static func validate(_ options: TextTrainingOptions) throws(LengthTrainingError) {
        guard options.hashing.isValid else { throw .invalidOption("hashing configuration (hash bits 8...24, token windows 0...65536, cross scale in (0, 16])") }
        guard TextLengthModelFile.sizeIsAllowed(hashing: options.hashing, buckets: options.buckets) else {
            throw .invalidOption("\(options.buckets.count) buckets x 2^\(options.hashing.hashBits) slots is over the model file limits")
        }
        guard (1...maxEpochs).contains(options.epochs) else { throw .invalidOption("epochs must lie in 1...\(maxEpochs)") }
        guard options.learningRate > 0, options.learningRate <= maxLearningRate else {
            throw .invalidOption("learning rate must be finite, in (0, \(maxLearningRate)]")
        }
        guard options.l2 >= 0, options.l2 <= maxLearningRate else {
            throw .invalidOption("l2 must be finite, in [0, \(maxLearningRate)]")
        }
        guard options.reserveQuantile > 0, options.reserveQuantile < 1 else {
            throw .invalidOption("reserve quantile must lie in (0, 1)")
        }
        guard options.expectedQuantile > 0, options.expectedQuantile < 1 else {
            throw .invalidOption("expected quantile must lie in (0, 1)")
        }
    }

    public static func train(_ examples: [LengthExample], options: TextTrainingOptions = TextTrainingOptions(),
                             progress: ((TrainingProgress) -> Void)? = nil) throws(LengthTrainingError) -> TextLengthModel {
        guard !examples.isEmpty else { throw .noExamples }
        try validate(options)
        var model = TextLengthModel(hashing: options.hashing, buckets: options.buckets,
                                    reserveQuantile: options.reserveQuantile,
                                    expectedStatistic: options.expectedStatistic,
                                    expectedQuantile: options.expectedQuantile)
        let k = options.buckets.count
        let labels = makeLabels(examples, buckets: options.buckets, stride: model.rowStride, soft: options.softLabels)
        let exampleWeights = options.balanceSources ? sourceWeights(examples) : [Float](repeating: 1, count: examples.count)
        fillStatistics(&model, examples: examples)

        let hasher = FeatureHasher(config: options.hashing)
        let features = FeatureVector(config: options.hashing)
        var accumulators = [Float](repeating: 0.1, count: model.weights.count)
        let stride = model.rowStride
        var probabilities = [Float](repeating: 0, count: stride)
        var order = Array(examples.indices)
        var rng = SplitMix64(seed: options.seed)
        let rate = options.learningRate
        let l2 = options.l2
        let start = KVClock.monotonicNanos()

        for epoch in 1...options.epochs {
            order.shuffle(using: &rng)
            var loss = 0.0
            for j in order {
                hasher.extract(examples[j].input, into: features)
                let n = features.count
                model.weights.withUnsafeMutableBufferPointer { w in
                    accumulators.withUnsafeMutableBufferPointer { g in
                        probabilities.withUnsafeMutableBufferPointer { p in
                            labels.withUnsafeBufferPointer { y in
                                features.indices.withUnsafeBufferPointer { idx in
                                    features.values.withUnsafeBufferPointer { val in
                                        TextLengthModel.accumulate(scores: p.baseAddress!, weights: w.baseAddress!,
                                                                   stride: stride, indices: idx.baseAddress!,
                                                                   values: val.baseAddress!, count: n)
                                        Softmax.inPlace(UnsafeMutableBufferPointer(rebasing: p[0..<k]))
                                        let label = j * stride
                                        let weight = exampleWeights[j]
                                        for c in 0..<k where y[label + c] > 0 {
                                            loss -= Double(weight * y[label + c]) * log(Double(max(p[c], 1e-12)))
                                        }
                                        // AdaGrad on the rows present, 8 lanes at a time; padding lanes
                                        // have p = y = w = 0 and stay zero.
                                        let pv = UnsafeRawPointer(p.baseAddress!)
                                        let yv = UnsafeRawPointer(y.baseAddress! + label)
                                        for i in 0..<n {
                                            let base = Int(idx[i]) * stride
                                            let v = SIMD8<Float>(repeating: val[i] * weight)
                                            let wRow = UnsafeMutableRawPointer(w.baseAddress! + base)
                                            let gRow = UnsafeMutableRawPointer(g.baseAddress! + base)
                                            for chunk in 0..<(stride / 8) {
                                                let o = chunk * 32
                                                let wc = wRow.loadUnaligned(fromByteOffset: o, as: SIMD8<Float>.self)
                                                let pc = pv.loadUnaligned(fromByteOffset: o, as: SIMD8<Float>.self)
                                                let yc = yv.loadUnaligned(fromByteOffset: o, as: SIMD8<Float>.self)
                                                let gradient = (pc - yc) * v + l2 * wc
                                                let acc = gRow.loadUnaligned(fromByteOffset: o, as: SIMD8<Float>.self)
                                                    + gradient * gradient
                                                gRow.storeBytes(of: acc, toByteOffset: o, as: SIMD8<Float>.self)
                                                wRow.storeBytes(of: wc - rate * gradient / acc.squareRoot(),
                                                                toByteOffset: o, as: SIMD8<Float>.self)
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            progress?(TrainingProgress(epoch: epoch, meanLoss: loss / Double(examples.count),
                                       seconds: KVClock.seconds(from: start, to: KVClock.monotonicNanos())))
        }
        guard model.weights.allSatisfy({ $0.isFinite }) else {
            throw .invalidOption("training diverged (a weight is not finite); lower the learning rate")
        }
        return model
    }

    /// Per example, `stride` label weights (K used, summing to 1, the rest zero). O(examples x K).
    static func makeLabels(_ examples: [LengthExample], buckets: LengthBuckets, stride k: Int, soft: Bool) -> [Float] {
        var labels = [Float](repeating: 0, count: examples.count * k)
        for (j, example) in examples.enumerated() {
            if soft && !example.samples.isEmpty {
                let w = 1 / Float(example.samples.count)
                for s in example.samples { labels[j * k + buckets.bucket(of: Double(s))] += w }
            } else {
                labels[j * k + buckets.bucket(of: example.target)] = 1
            }
        }
        return labels
    }

    /// Per example, `n / (sources x examples of its source)`: every source weighs the same and the
    /// weights average 1. O(n).
    static func sourceWeights(_ examples: [LengthExample]) -> [Float] {
        var counts: [String?: Int] = [:]
        for example in examples { counts[example.source, default: 0] += 1 }
        let scale = Double(examples.count) / Double(counts.count)
        return examples.map { Float(scale / Double(counts[$0.source]!)) }
    }

    /// Training mean, median, quantile, bucket means and the top value. O(n log n).
    static func fillStatistics(_ model: inout TextLengthModel, examples: [LengthExample]) {
        let targets = examples.map(\.target).sorted()
        model.trainingExamples = examples.count
        model.trainingMean = targets.reduce(0, +) / Double(targets.count)
        model.trainingMedian = Self.quantile(targets, 0.5)
        model.trainingQuantile = Self.quantile(targets, model.reserveQuantile)
        let k = model.buckets.count
        var sums = [Double](repeating: 0, count: k)
        var counts = [Double](repeating: 0, count: k)
        var top = 0.0
        for example in examples {
            let values = example.samples.isEmpty ? [example.target] : example.samples.map(Double.init)
            for v in values {
                let b = model.buckets.bucket(of: v)
                sums[b] += v
                counts[b] += 1
                top = max(top, v)
            }
        }
        for b in 0..<k where counts[b] > 0 { model.bucketMeans[b] = Float(sums[b] / counts[b]) }
        model.topValue = Float(max(top, Double(model.buckets.lowerBounds[k - 1]) + 1))
    }

    /// Linear-interpolated quantile of sorted values. O(1).
    public static func quantile(_ sorted: [Double], _ q: Double) -> Double {
        guard !sorted.isEmpty else { return 0 }
        let position = q * Double(sorted.count - 1)
        let lo = Int(position.rounded(.down))
        let hi = min(sorted.count - 1, lo + 1)
        return sorted[lo] + (position - Double(lo)) * (sorted[hi] - sorted[lo])
    }
}
