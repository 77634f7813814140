import KVData
import KVScheduler

/// Which point of the predicted distribution becomes `LengthPrediction.expected`.
public enum ExpectedStatistic: String, Sendable, Codable, CaseIterable {
    /// The median: the point estimate with the least absolute error.
    case median
    /// The mean, from the per-bucket means of the training data.
    case mean
    /// The model's `expectedQuantile` (below 0.5 when out-of-domain prompts make the predicted
    /// distributions too wide on the long side).
    case quantile
}

/// The parameters of a multinomial logistic regression over length buckets on hashed features, and
/// what is needed to turn its bucket probabilities into lengths.
public struct TextLengthModel: Sendable {
    /// How inputs become features; must match between training and serving.
    public private(set) var hashing: FeatureHashingConfig
    /// The classes.
    public private(set) var buckets: LengthBuckets
    /// Row-major `[slot * rowStride + k]`, `1 << hashing.hashBits` rows; the lanes from
    /// `buckets.count` to `rowStride` are padding and stay zero. Only this module writes it (trainer,
    /// file reader, online updates), so its size always matches `hashing` and `buckets`.
    public internal(set) var weights: [Float]
    /// Floats per weight row: `buckets.count` rounded up to a multiple of 8, so rows load as `SIMD8`.
    public let rowStride: Int
    /// The mean training length inside each bucket (for the `mean` statistic); `buckets.count` entries.
    public internal(set) var bucketMeans: [Float]
    /// The largest training length: the top of the open last bucket.
    public var topValue: Float
    /// The quantile of the predicted distribution to reserve (for example 0.9).
    public var reserveQuantile: Double
    /// Which statistic is `expected`.
    public var expectedStatistic: ExpectedStatistic
    /// The quantile `expected` is when `expectedStatistic` is `.quantile`, in (0, 1).
    public var expectedQuantile: Double
    /// Training-set figures the evaluation baselines need: mean, median and `reserveQuantile` of the targets.
    public var trainingMean: Double
    public var trainingMedian: Double
    public var trainingQuantile: Double
    /// How many examples trained the model.
    public var trainingExamples: Int

    /// A zero model (uniform probabilities) with the given shape.
    public init(hashing: FeatureHashingConfig, buckets: LengthBuckets, reserveQuantile: Double = 0.9,
                expectedStatistic: ExpectedStatistic = .median, expectedQuantile: Double = 0.5) {
        self.hashing = hashing
        self.buckets = buckets
        rowStride = (buckets.count + 7) & ~7
        weights = [Float](repeating: 0, count: (1 << hashing.hashBits) * rowStride)
        bucketMeans = buckets.lowerBounds.enumerated().map { i, lo in
            Float(i + 1 < buckets.count ? Double(lo + buckets.lowerBounds[i + 1]) / 2 : Double(lo))
        }
        topValue = Float(buckets.lowerBounds.last! * 2)
        self.reserveQuantile = reserveQuantile
        self.expectedStatistic = expectedStatistic
        self.expectedQuantile = expectedQuantile
        trainingMean = 0
        trainingMedian = 0
        trainingQuantile = 0
        trainingExamples = 0
    }

    /// The length at cumulative probability `q` of a bucket distribution, interpolating linearly
    /// inside the bucket where the cumulative probability crosses `q`. O(K), allocates nothing.
    @inlinable
    public func quantile(_ q: Double, probabilities p: UnsafeBufferPointer<Float>) -> Double {
        let k = buckets.count
        var cumulative = 0.0
        for i in 0..<k {
            let pi = Double(p[i])
            if cumulative + pi >= q || i == k - 1 {
                let lo = Double(buckets.lowerBounds[i])
                let hi = i + 1 < k ? Double(buckets.lowerBounds[i + 1]) : max(lo, Double(topValue))
                let fraction = pi > 0 ? min(1, max(0, (q - cumulative) / pi)) : 0.5
                return lo + fraction * (hi - lo)
            }
            cumulative += pi
        }
        return Double(buckets.lowerBounds[k - 1])
    }

    /// Adds `value x row(slot)` to `scores` for each feature: the linear part of the classifier.
    ///
    /// - Complexity: O(F x rowStride), vectorised 8 lanes at a time; allocates nothing.
    @inline(__always)
    static func accumulate(scores: UnsafeMutablePointer<Float>, weights: UnsafePointer<Float>, stride: Int,
                           indices: UnsafePointer<Int32>, values: UnsafePointer<Float>, count: Int) {
        let chunks = stride / 8
        let s = UnsafeMutableRawPointer(scores)
        // Features outer, up to four 8-lane accumulators inner: each weight row is read once.
        var first = 0
        while first < chunks {
            let n = min(4, chunks - first)
            var a0 = SIMD8<Float>(repeating: 0), a1 = a0, a2 = a0, a3 = a0
            for i in 0..<count {
                let row = UnsafeRawPointer(weights + Int(indices[i]) * stride + first * 8)
                let v = values[i]
                a0 += v * row.loadUnaligned(as: SIMD8<Float>.self)
                if n > 1 { a1 += v * row.loadUnaligned(fromByteOffset: 32, as: SIMD8<Float>.self) }
                if n > 2 { a2 += v * row.loadUnaligned(fromByteOffset: 64, as: SIMD8<Float>.self) }
                if n > 3 { a3 += v * row.loadUnaligned(fromByteOffset: 96, as: SIMD8<Float>.self) }
            }
            let base = first * 32
            s.storeBytes(of: a0, toByteOffset: base, as: SIMD8<Float>.self)
            if n > 1 { s.storeBytes(of: a1, toByteOffset: base + 32, as: SIMD8<Float>.self) }
            if n > 2 { s.storeBytes(of: a2, toByteOffset: base + 64, as: SIMD8<Float>.self) }
            if n > 3 { s.storeBytes(of: a3, toByteOffset: base + 96, as: SIMD8<Float>.self) }
            first += n
        }
    }

    /// The mean length of a bucket distribution. O(K).
    @inlinable
    public func mean(probabilities p: UnsafeBufferPointer<Float>) -> Double {
        var s = 0.0
        for i in 0..<buckets.count { s += Double(p[i]) * Double(bucketMeans[i]) }
        return s
    }
}
