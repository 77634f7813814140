import ArgumentParser
import Foundation
import KVBench
import KVCache
import KVData
import KVPrediction
import KVScheduler

extension PredictCommand {
    struct Eval: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Evaluate a predictor on the held-out split against the training-mean baseline.")

        @OptionGroup var dataOptions: DataOptions
        @Option(help: "A model file written by `kvcache predict train`.")
        var model: String?
        @Flag(help: "Evaluate the history predictor instead: warm it on the training split, then predict and observe each held-out request in turn.")
        var history = false
        @Flag(help: "Text predictor: after predicting each held-out request, observe its true length (prequential evaluation): reserve calibration plus an SGD step of --online-rate. The history predictor always learns online.")
        var online = false
        @Option(name: .customLong("online-rate"), help: "SGD step of --online (0: calibrate reserves only).")
        var onlineRate: Float = 0.02
        @Option(help: "Quantile to reserve (default: the model's, or 0.9 for --history).")
        var quantile: Double?
        @OptionGroup(title: "Report") var reportOutput: ReportOptions
    var json: Bool { reportOutput.machine }

        func validate() throws {
            if history == (model != nil) { throw ValidationError("give either --model MODEL or --history") }
            if !(onlineRate.isFinite && onlineRate >= 0 && onlineRate <= TextLengthTrainer.maxLearningRate) {
                throw ValidationError("--online-rate must be a finite number in [0, \(TextLengthTrainer.maxLearningRate)]")
            }
            if let quantile, !(quantile > 0 && quantile < 1) { throw ValidationError("--quantile must lie in (0, 1)") }
        }

        func run() throws {
            // The model first: a bad model file fails before the data is read.
            var loadedModel: TextLengthModel? = nil
            if let path = model {
                do { loadedModel = try TextLengthModelFile.load(from: path) } catch { throw CLIError(error.description) }
            }
            let (set, format) = try dataOptions.load()
            let heldOut = set.heldOut
            let training = set.training
            guard !heldOut.isEmpty else { throw CLIError("the split leaves no held-out examples") }
            let predictor: any OutputLengthPredictor
            let buckets: LengthBuckets
            let mean: Double, median: Double, upper: Double, q: Double
            if let loaded = loadedModel {
                let text = TextLengthPredictor(model: loaded, onlineLearningRate: online ? onlineRate : 0,
                                               calibrateReserve: online)
                if let quantile { text.reserveQuantile = quantile }
                q = text.reserveQuantile
                predictor = text
                buckets = loaded.buckets
                mean = loaded.trainingMean
                median = loaded.trainingMedian
                upper = quantile == nil ? loaded.trainingQuantile
                    : TextLengthTrainer.quantile(training.map(\.target).sorted(), q)
            } else {
                guard !training.isEmpty else { throw CLIError("the split leaves no training examples") }
                let config = HistoryPredictorConfig(reserveQuantile: quantile ?? 0.9)
                let h = HistoryLengthPredictor(config: config)
                for example in training { h.observe(example.input, actualOutput: Int(example.target.rounded())) }
                predictor = h
                buckets = config.buckets
                q = config.reserveQuantile
                let sorted = training.map(\.target).sorted()
                mean = sorted.reduce(0, +) / Double(sorted.count)
                median = TextLengthTrainer.quantile(sorted, 0.5)
                upper = TextLengthTrainer.quantile(sorted, q)
            }
            let evaluation = LengthEvaluator.evaluate(predictor, examples: heldOut, buckets: buckets,
                                                      trainingMean: mean, trainingMedian: median,
                                                      trainingQuantile: upper, reserveQuantile: q,
                                                      online: history || online)
            let sample = Array(heldOut.prefix(2000)).map(\.input)
            let ns = PredictorBench.nanosecondsPerPrediction(predictor, inputs: sample)
            if json {
                var fields: [(String, JSONValue)] = [
                    ("predictor", .string(history ? "history" : "text")), ("online", .bool(history || online)),
                    ("format", .string(format.rawValue)),
                ]
                fields += evaluation.jsonFields
                fields.append(("ns_per_prediction", .double(ns)))
                if !(history || online) {
                    let bySource = LengthEvaluator.evaluateBySource(
                        predictor, examples: heldOut, buckets: buckets, trainingMean: mean, trainingMedian: median,
                        trainingQuantile: upper, reserveQuantile: q)
                    if !bySource.isEmpty {
                        fields.append(("mae_ratio_by_source",
                                       .object(bySource.keys.sorted().map { ($0, .double(bySource[$0]!.maeRatio)) })))
                    }
                }
                try reportOutput.emit(command: "predict eval", object: .object(fields))
            } else {
                let e = evaluation
                print(String(format: """
                    %@ predictor on %d held-out examples (%d observed outputs), format %@
                                          predictor   train-mean baseline
                      MAE (tokens)        %9.1f   %9.1f   (ratio %.3f; train-median MAE %.1f)
                      bucket accuracy     %9.3f   %9.3f
                      underpredict rate   %9.3f   %9.3f   (reserve q=%.2f; vs expected: %.3f)
                      mean reserve        %9.1f   %9.1f   (train q-quantile for all: underpredict %.3f)
                      prediction cost     %9.0f ns
                    """, history ? "history" : "text", e.examples, e.samples, format.rawValue,
                    e.mae, e.baselineMAE, e.maeRatio, e.baselineMedianMAE,
                    e.bucketAccuracy, e.baselineBucketAccuracy,
                    e.underpredictRate, e.baselineUnderpredictRate, e.reserveQuantile, e.expectedUnderpredictRate,
                    e.meanReserve, e.baselineQuantileMeanReserve, e.baselineQuantileUnderpredictRate, ns))
            }
        }
    }
}
