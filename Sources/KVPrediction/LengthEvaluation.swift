import KVData
import KVScheduler

/// Accuracy figures of an output-length predictor on held-out examples, next to a baseline that
/// always predicts the training mean.
///
/// - `mae`: mean |expected - target| over examples.
/// - `bucketAccuracy`: share of examples whose predicted bucket holds the target.
/// - `underpredictRate`: share of individual observed outputs (each CASTILLO sample, each ShareGPT
///   reply) longer than the reserved tokens: how often a request would outgrow its reservation.
/// - `expectedUnderpredictRate`: the same against `expected`.
/// - `meanReserve`: mean reserved tokens, the memory price of that rate.
/// - baselines: `baseline*` predict the training mean (expected, bucket and reserve);
///   `baselineMedianMAE` predicts the training median; `baselineQuantile*` reserves the training
///   targets' quantile for every request, a fair comparison for `underpredictRate`/`meanReserve`.
public struct LengthEvaluation: Sendable {
    public var examples = 0
    public var samples = 0
    public var meanTarget = 0.0
    public var mae = 0.0
    public var bucketAccuracy = 0.0
    public var underpredictRate = 0.0
    public var expectedUnderpredictRate = 0.0
    public var meanReserve = 0.0
    public var reserveQuantile = 0.0
    public var baselineMAE = 0.0
    public var baselineBucketAccuracy = 0.0
    public var baselineUnderpredictRate = 0.0
    public var baselineMedianMAE = 0.0
    public var baselineQuantileUnderpredictRate = 0.0
    public var baselineQuantileMeanReserve = 0.0
    /// `mae / baselineMAE` (the target is at most 0.75).
    public var maeRatio = 0.0

    /// The figures as JSON fields, in this order, with the keys `kvcache predict ... --json` documents.
    public var jsonFields: [(String, JSONValue)] {
        [
            ("examples", .int(examples)), ("samples", .int(samples)), ("mean_target", .double(meanTarget)),
            ("mae", .double(mae)), ("mae_ratio", .double(maeRatio)), ("bucket_accuracy", .double(bucketAccuracy)),
            ("underpredict_rate", .double(underpredictRate)),
            ("expected_underpredict_rate", .double(expectedUnderpredictRate)),
            ("mean_reserve", .double(meanReserve)), ("reserve_quantile", .double(reserveQuantile)),
            ("baseline_mae", .double(baselineMAE)), ("baseline_median_mae", .double(baselineMedianMAE)),
            ("baseline_bucket_accuracy", .double(baselineBucketAccuracy)),
            ("baseline_underpredict_rate", .double(baselineUnderpredictRate)),
            ("baseline_quantile_underpredict_rate", .double(baselineQuantileUnderpredictRate)),
            ("baseline_quantile_mean_reserve", .double(baselineQuantileMeanReserve)),
        ]
    }

    public init() {}
}

/// Computes `LengthEvaluation`s.
public enum LengthEvaluator {
    /// Evaluates `predictor` on `examples`.
    ///
    /// - Parameters:
    ///   - buckets: the buckets `bucketAccuracy` is measured in.
    ///   - trainingMean, trainingMedian, trainingQuantile: the baselines' constants, from training data.
    ///   - reserveQuantile: recorded in the result.
    ///   - online: calls `observe` with each example's target after predicting it (prequential
    ///     evaluation of predictors that learn as requests finish).
    /// - Complexity: O(n) predictions.
    public static func evaluate(_ predictor: any OutputLengthPredictor, examples: [LengthExample],
                                buckets: LengthBuckets, trainingMean: Double, trainingMedian: Double,
                                trainingQuantile: Double, reserveQuantile: Double,
                                online: Bool = false) -> LengthEvaluation {
        var e = LengthEvaluation()
        e.reserveQuantile = reserveQuantile
        guard !examples.isEmpty else { return e }
        let baselineBucket = buckets.bucket(of: trainingMean)
        var absError = 0.0, baselineAbs = 0.0, medianAbs = 0.0, targets = 0.0, reserve = 0.0
        var hits = 0, baselineHits = 0
        var under = 0, underExpected = 0, baselineUnder = 0, quantileUnder = 0, samples = 0
        for example in examples {
            let p = predictor.predict(example.input)
            let t = example.target
            targets += t
            absError += abs(Double(p.expected) - t)
            baselineAbs += abs(trainingMean - t)
            medianAbs += abs(trainingMedian - t)
            let truth = buckets.bucket(of: t)
            if p.bucket == truth { hits += 1 }
            if baselineBucket == truth { baselineHits += 1 }
            reserve += Double(p.reserve)
            let observed = example.samples.isEmpty ? [Int32(clamping: Int(t.rounded()))] : example.samples
            for s in observed {
                let v = Double(s)
                samples += 1
                if v > Double(p.reserve) { under += 1 }
                if v > Double(p.expected) { underExpected += 1 }
                if v > trainingMean { baselineUnder += 1 }
                if v > trainingQuantile { quantileUnder += 1 }
            }
            if online { predictor.observe(example.input, actualOutput: Int(t.rounded())) }
        }
        let n = Double(examples.count)
        let s = Double(max(1, samples))
        e.examples = examples.count
        e.samples = samples
        e.meanTarget = targets / n
        e.mae = absError / n
        e.bucketAccuracy = Double(hits) / n
        e.underpredictRate = Double(under) / s
        e.expectedUnderpredictRate = Double(underExpected) / s
        e.meanReserve = reserve / n
        e.baselineMAE = baselineAbs / n
        e.baselineBucketAccuracy = Double(baselineHits) / n
        e.baselineUnderpredictRate = Double(baselineUnder) / s
        e.baselineMedianMAE = medianAbs / n
        e.baselineQuantileUnderpredictRate = Double(quantileUnder) / s
        e.baselineQuantileMeanReserve = trainingQuantile
        e.maeRatio = e.baselineMAE > 0 ? e.mae / e.baselineMAE : 0
        return e
    }

    /// `evaluate` on each source data set of `examples` apart (static predictors only: nothing is
    /// observed), keyed by source; examples without a source are left out. O(n) predictions.
    public static func evaluateBySource(_ predictor: any OutputLengthPredictor, examples: [LengthExample],
                                        buckets: LengthBuckets, trainingMean: Double, trainingMedian: Double,
                                        trainingQuantile: Double, reserveQuantile: Double) -> [String: LengthEvaluation] {
        var bySource: [String: [LengthExample]] = [:]
        for example in examples {
            if let source = example.source { bySource[source, default: []].append(example) }
        }
        return bySource.mapValues {
            evaluate(predictor, examples: $0, buckets: buckets, trainingMean: trainingMean, trainingMedian: trainingMedian,
                     trainingQuantile: trainingQuantile, reserveQuantile: reserveQuantile)
        }
    }
}
