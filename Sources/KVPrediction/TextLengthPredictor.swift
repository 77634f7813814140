import KVData
import KVScheduler

/// The text predictor: hashed prompt features -> bucket probabilities -> expected length and a
/// reservation quantile.
///
/// `predict` costs O(F x K) for F features (at most `hashing.maxFeatures`) and K buckets, plus the
/// bounded scan of the prompt; it allocates nothing. It scores with a bfloat16 copy of the weights
/// (`PackedWeights`: one cache line per feature); training and the model file keep Float32.
/// `observe` feeds a `ReserveCalibrator` (when `calibrateReserve`) and takes one SGD step towards the
/// true length's bucket (when `onlineLearningRate > 0`). Single-threaded, like the scheduler that calls it.
public final class TextLengthPredictor: OutputLengthPredictor {
    public private(set) var model: TextLengthModel
    /// The quantile reserved; defaults to the model's.
    public var reserveQuantile: Double
    /// Step size of the online update in `observe` (0 turns it off).
    public var onlineLearningRate: Float
    /// Whether `observe` adjusts reserves towards the target underpredict rate.
    public var calibrateReserve: Bool
    /// The reserve scale learnt from observed requests (1 until then, or when not calibrating).
    public private(set) var calibrator: ReserveCalibrator
    private let hasher: FeatureHasher
    private let features: FeatureVector
    private let packed: PackedWeights
    private var probabilities: [Float]

    public init(model: TextLengthModel, onlineLearningRate: Float = 0.02, calibrateReserve: Bool = true) {
        self.model = model
        reserveQuantile = model.reserveQuantile
        self.onlineLearningRate = onlineLearningRate
        self.calibrateReserve = calibrateReserve
        calibrator = ReserveCalibrator(quantile: model.reserveQuantile)
        hasher = FeatureHasher(config: model.hashing)
        features = FeatureVector(config: model.hashing)
        packed = PackedWeights(model: model)
        probabilities = [Float](repeating: 0, count: packed.lanes)
    }

    public func predict(_ input: PredictionInput) -> LengthPrediction {
        computeProbabilities(input)
        return probabilities.withUnsafeBufferPointer { p in
            var best = 0
            for k in 1..<model.buckets.count where p[k] > p[best] { best = k }
            let expected: Double = switch model.expectedStatistic {
            case .median: model.quantile(0.5, probabilities: p)
            case .quantile: model.quantile(model.expectedQuantile, probabilities: p)
            case .mean: model.mean(probabilities: p)
            }
            let reserve = model.quantile(reserveQuantile, probabilities: p)
            let limit = max(1, input.maxTokens)
            let e = min(limit, max(1, Int(expected.rounded())))
            let r = calibrator.apply(reserve, floor: e, limit: limit)
            return LengthPrediction(expected: e, reserve: r, bucket: best)
        }
    }

    public func observe(_ input: PredictionInput, actualOutput: Int) {
        guard actualOutput >= 0 else { return }
        if calibrateReserve {
            if calibrator.quantile != reserveQuantile { calibrator = ReserveCalibrator(quantile: reserveQuantile) }
            let p = predict(input)
            if p.reserve < input.maxTokens { calibrator.record(reserve: p.reserve, actual: actualOutput) }
        }
        guard onlineLearningRate > 0 else { return }
        computeProbabilities(input)
        let target = model.buckets.bucket(of: Double(actualOutput))
        let k = model.buckets.count
        let stride = model.rowStride
        let rate = onlineLearningRate
        probabilities.withUnsafeBufferPointer { p in
            model.weights.withUnsafeMutableBufferPointer { w in
                for i in 0..<features.count {
                    let base = Int(features.indices[i]) * stride
                    let v = features.values[i]
                    for c in 0..<k {
                        let gradient = p[c] - (c == target ? 1 : 0)
                        w[base + c] -= rate * gradient * v
                    }
                    packed.store(row: Int(features.indices[i]), from: w.baseAddress! + base)
                }
            }
        }
    }

    /// The bucket probabilities for `input` (a copy; for tools and tests).
    public func bucketProbabilities(_ input: PredictionInput) -> [Float] {
        computeProbabilities(input)
        return Array(probabilities[0..<model.buckets.count])
    }

    /// Softmax of the linear scores, into `probabilities`. O(F x K), allocates nothing.
    private func computeProbabilities(_ input: PredictionInput) {
        hasher.extract(input, into: features)
        let k = model.buckets.count
        let count = features.count
        probabilities.withUnsafeMutableBufferPointer { p in
            features.indices.withUnsafeBufferPointer { idx in
                features.values.withUnsafeBufferPointer { val in
                    packed.accumulate(scores: p.baseAddress!, indices: idx.baseAddress!,
                                      values: val.baseAddress!, count: count)
                }
            }
            Softmax.inPlace(UnsafeMutableBufferPointer(rebasing: p[0..<k]))
        }
    }
}

/// Numerically stable softmax.
enum Softmax {
    /// Replaces scores by probabilities. O(K).
    @inline(__always) static func inPlace(_ p: UnsafeMutableBufferPointer<Float>) {
        var top = -Float.infinity
        for x in p where x > top { top = x }
        var sum: Float = 0
        for c in 0..<p.count { let e = expf(p[c] - top); p[c] = e; sum += e }
        let inv = 1 / sum
        for c in 0..<p.count { p[c] *= inv }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
