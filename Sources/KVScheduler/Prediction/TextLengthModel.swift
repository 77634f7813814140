/// Which point of the predicted distribution becomes `LengthPrediction.expected`.
public enum ExpectedStatistic: String, Sendable, Codable, CaseIterable {
    /// The median: the point estimate with the least absolute error.
    case median
    /// The mean, from the per-bucket means of the training data.
    case mean
}

/// The parameters of a multinomial logistic regression over length buckets on hashed features, and
/// what is needed to turn its bucket probabilities into lengths.
public struct TextLengthModel: Sendable {
    /// How inputs become features; must match between training and serving.
    public var hashing: FeatureHashingConfig
    /// The classes.
    public var buckets: LengthBuckets
    /// Row-major `[slot * buckets.count + k]`, `1 << hashing.hashBits` rows.
    public var weights: [Float]
    /// The mean training length inside each bucket (for the `mean` statistic).
    public var bucketMeans: [Float]
    /// The largest training length: the top of the open last bucket.
    public var topValue: Float
    /// The quantile of the predicted distribution to reserve (for example 0.9).
    public var reserveQuantile: Double
    /// Which statistic is `expected`.
    public var expectedStatistic: ExpectedStatistic
    /// Training-set figures the evaluation baselines need: mean, median and `reserveQuantile` of the targets.
    public var trainingMean: Double
    public var trainingMedian: Double
    public var trainingQuantile: Double
    /// How many examples trained the model.
    public var trainingExamples: Int

    /// A zero model (uniform probabilities) with the given shape.
    public init(hashing: FeatureHashingConfig, buckets: LengthBuckets, reserveQuantile: Double = 0.9,
                expectedStatistic: ExpectedStatistic = .median) {
        self.hashing = hashing
        self.buckets = buckets
        weights = [Float](repeating: 0, count: (1 << hashing.hashBits) * buckets.count)
        bucketMeans = buckets.lowerBounds.enumerated().map { i, lo in
            Float(i + 1 < buckets.count ? Double(lo + buckets.lowerBounds[i + 1]) / 2 : Double(lo))
        }
        topValue = Float(buckets.lowerBounds.last! * 2)
        self.reserveQuantile = reserveQuantile
        self.expectedStatistic = expectedStatistic
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

    /// The mean length of a bucket distribution. O(K).
    @inlinable
    public func mean(probabilities p: UnsafeBufferPointer<Float>) -> Double {
        var s = 0.0
        for i in 0..<buckets.count { s += Double(p[i]) * Double(bucketMeans[i]) }
        return s
    }
}
