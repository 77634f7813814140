import ArgumentParser
import Foundation
import KVScheduler

/// `kvcache predict`: trains and evaluates output-length predictors.
struct PredictCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "predict",
        abstract: "Train and evaluate output-length predictors (text: CASTILLO, ShareGPT; history: any).",
        subcommands: [Train.self, Eval.self, Validate.self, Compare.self, Bench.self]
    )

    enum DataFormat: String, ExpressibleByArgument, CaseIterable {
        case auto, castillo, sharegpt, mooncake
    }

    enum SplitRule: String, ExpressibleByArgument, CaseIterable {
        case data, hash
    }

    /// Options shared by `train` and `eval`.
    struct DataOptions: ParsableArguments {
        @Option(help: "A CASTILLO folder (*lengths*.jsonl[.gz] + *prompts*.jsonl[.gz]) or ShareGPT JSON[L][.gz] file or folder.")
        var data: String
        @Option(help: "castillo, sharegpt, mooncake (lengths only: for --history), or auto (a folder with a *lengths* file is CASTILLO, a file with \"hash_ids\" Mooncake, else ShareGPT).")
        var format: DataFormat = .auto
        @Option(name: .customLong("model-id"),
                help: "CASTILLO: keep only this model's rows. ShareGPT: the model id given to every request.")
        var modelID: String?
        @Option(help: "How to split train/held-out, always by prompt or conversation: `data` uses the data's own split (CASTILLO's split field: train vs validate; ShareGPT: hash), `hash` holds out one prompt in five by a stable hash of its id.")
        var split: SplitRule = .data
        @Option(name: .customLong("context-bytes"),
                help: "ShareGPT: prefix each later turn's prompt text with this many trailing bytes of the previous reply (0: the turn alone). Give train and eval the same value.")
        var contextBytes = 3000
        @Flag(name: .customLong("task-id"),
              help: "CASTILLO: give the dataset name (the task) to the predictors as the template key.")
        var taskID = false

        func load() throws -> (LengthDataSet, DataFormat) {
            var resolved = format
            if resolved == .auto {
                var isFolder: ObjCBool = false
                _ = FileManager.default.fileExists(atPath: data, isDirectory: &isFolder)
                let names = isFolder.boolValue ? ((try? FileManager.default.contentsOfDirectory(atPath: data)) ?? []) : []
                if names.contains(where: { $0.contains("lengths") }) {
                    resolved = .castillo
                } else if !isFolder.boolValue, let handle = FileHandle(forReadingAtPath: data) {
                    let head = String(decoding: handle.readData(ofLength: 4096), as: UTF8.self)
                    resolved = head.contains("\"hash_ids\"") ? .mooncake : .sharegpt
                } else {
                    resolved = .sharegpt
                }
            }
            var set: LengthDataSet
            do {
                switch resolved {
                case .castillo: set = try CastilloReader.load(folder: data, modelID: modelID, taskAsTemplate: taskID)
                case .mooncake: set = try MooncakeLengthReader.load(path: data)
                default: set = try ShareGPTReader.load(path: data, modelID: modelID, contextBytes: contextBytes)
                }
            } catch {
                throw CLIError(error.description)
            }
            if split == .hash { set.splitByGroupHash() }
            if set.skippedRecords > 0 {
                note("skipped \(set.skippedRecords) records without a usable prompt or reply")
            }
            if set.examples.isEmpty { throw CLIError("no examples in \(data)") }
            return (set, resolved)
        }
    }

    /// The text model's training options, shared by `train` and `validate`.
    struct TrainingArguments: ParsableArguments {
        @Option(help: "Passes over the training data.")
        var epochs = 6
        @Option(name: .customLong("learning-rate"), help: "AdaGrad step size.")
        var learningRate: Float = 0.2
        @Option(help: "L2 penalty on the weights each example touches.")
        var l2: Float = 1e-6
        @Option(name: .customLong("hash-bits"), help: "log2 of the feature space size (8...24).")
        var hashBits = 18
        @Option(name: .customLong("leading-tokens"), help: "Words and symbols read from the start of a prompt.")
        var leadingTokens = FeatureHashingConfig().leadingTokens
        @Option(name: .customLong("trailing-tokens"), help: "Words and symbols read from the end of a long prompt.")
        var trailingTokens = FeatureHashingConfig().trailingTokens
        @Option(help: "Quantile of the predicted distribution to reserve.")
        var quantile = 0.9
        @Option(help: "Statistic reported as the expected length: median, mean, or quantile (--expected-quantile).")
        var expected: String = "median"
        @Option(name: .customLong("expected-quantile"), help: "The quantile reported as expected with --expected quantile.")
        var expectedQuantile = 0.5
        @Flag(name: .customLong("no-model-crosses"), help: "Leave out (model x word) features.")
        var noModelCrosses = false
        @Flag(name: .customLong("no-bigrams"), help: "Leave out word bigrams.")
        var noBigrams = false
        @Option(name: .customLong("cross-scale"), help: "Value of a (model x word) feature relative to the word's own, in (0, 16].")
        var crossScale: Float = 1
        @Flag(name: .customLong("prompt-shape"), help: "Add the prompt-shape features (first word, question marks, lines, code symbols, requested counts).")
        var promptShape = false
        @Flag(name: .customLong("balance-sources"), help: "Weigh training examples so that every source data set counts the same.")
        var balanceSources = false
        @Flag(name: .customLong("hard-labels"), help: "Train on the target's bucket, not the samples' distribution.")
        var hardLabels = false

        func options() throws -> TextTrainingOptions {
            guard let statistic = ExpectedStatistic(rawValue: expected) else {
                throw CLIError("--expected must be median, mean or quantile")
            }
            var options = TextTrainingOptions()
            options.epochs = epochs
            options.learningRate = learningRate
            options.l2 = l2
            options.hashing.hashBits = hashBits
            options.hashing.leadingTokens = leadingTokens
            options.hashing.trailingTokens = trailingTokens
            options.hashing.modelCrosses = !noModelCrosses
            options.hashing.bigrams = !noBigrams
            options.hashing.modelCrossScale = crossScale
            options.hashing.promptShape = promptShape
            options.reserveQuantile = quantile
            options.expectedStatistic = statistic
            options.expectedQuantile = expectedQuantile
            options.softLabels = !hardLabels
            options.balanceSources = balanceSources
            return options
        }
    }

    struct Train: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Train the text predictor on the training split and save it.")

        @OptionGroup var dataOptions: DataOptions
        @Option(help: "Where to write the model file.")
        var out: String
        @OptionGroup var trainingArguments: TrainingArguments
        @Flag(help: "Print one JSON object on stdout.")
        var json = false

        func run() throws {
            let (set, format) = try dataOptions.load()
            let training = set.training
            guard !training.isEmpty else { throw CLIError("the split leaves no training examples") }
            let options = try trainingArguments.options()
            note("training on \(training.count) examples (\(set.examples.count - training.count) held out), format \(format.rawValue)")
            let start = Date()
            let model: TextLengthModel
            do {
                model = try TextLengthTrainer.train(training, options: options) { p in
                    note(String(format: "epoch %d: loss %.4f, %.1f s", p.epoch, p.meanLoss, p.seconds))
                }
            } catch {
                throw CLIError(error.description)
            }
            let seconds = Date().timeIntervalSince(start)
            do {
                try TextLengthModelFile.save(model, to: out)
            } catch {
                throw CLIError(error.description)
            }
            let bytes = (try? FileManager.default.attributesOfItem(atPath: out)[.size] as? Int) ?? 0
            note(String(format: "wrote %@ (%d bytes) after %.1f s of training", out, bytes, seconds))
            if json {
                try JSONReport.print([
                    "model": out, "format": format.rawValue, "train_examples": training.count,
                    "held_out_examples": set.examples.count - training.count, "epochs": options.epochs,
                    "train_seconds": seconds, "model_bytes": bytes, "training_mean": model.trainingMean,
                ])
            }
        }
    }

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
        @Flag(help: "Print one JSON object on stdout.")
        var json = false

        func validate() throws {
            if history == (model != nil) { throw ValidationError("give either --model MODEL or --history") }
            if !(onlineRate >= 0) { throw ValidationError("--online-rate must be >= 0") }
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
                let encoder = JSONEncoder()
                encoder.outputFormatting = .sortedKeys
                var object = (try JSONSerialization.jsonObject(with: try encoder.encode(evaluation))) as? [String: Any] ?? [:]
                object["predictor"] = history ? "history" : "text"
                object["online"] = history || online
                object["format"] = format.rawValue
                object["ns_per_prediction"] = ns
                if !(history || online) {
                    let bySource = LengthEvaluator.evaluateBySource(
                        predictor, examples: heldOut, buckets: buckets, trainingMean: mean, trainingMedian: median,
                        trainingQuantile: upper, reserveQuantile: q)
                    if !bySource.isEmpty { object["mae_ratio_by_source"] = bySource.mapValues(\.maeRatio) }
                }
                try JSONReport.print(object)
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

extension PredictCommand {
    struct Validate: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Cross-validate training options inside the training split only (held-out examples are never used): one fold per source data set, or k folds by prompt hash.")

        enum FoldRule: String, ExpressibleByArgument, CaseIterable {
            case source, hash, cell
        }

        @OptionGroup var dataOptions: DataOptions
        @OptionGroup var trainingArguments: TrainingArguments
        @Option(help: "source: leave one source data set out at a time (CASTILLO's dataset field); hash: --k folds by prompt hash; cell: --k folds of (model, source) cells on prompts held out by hash, never trained on.")
        var folds: FoldRule = .source
        @Option(help: "Number of hash or cell folds.")
        var k = 5
        @Flag(help: "Print one JSON object on stdout.")
        var json = false

        func run() throws {
            let (set, format) = try dataOptions.load()
            let options = try trainingArguments.options()
            let rule: ValidationFolds = switch folds {
            case .source: .source
            case .hash: .hash(k)
            case .cell: .cell(k)
            }
            let results: [ValidationFoldResult]
            do {
                results = try LengthCrossValidation.run(set.training, rule: rule, options: options) { r in
                    note(String(format: "%@: %d held out, mae_ratio %.3f (MAE %.1f, baseline %.1f), underpredict %.3f",
                                r.name, r.evaluation.examples, r.evaluation.maeRatio, r.evaluation.mae,
                                r.evaluation.baselineMAE, r.evaluation.underpredictRate))
                }
            } catch {
                throw CLIError(error.description)
            }
            let mean = LengthCrossValidation.meanRatio(results)
            if json {
                try JSONReport.print([
                    "format": format.rawValue, "folds": folds.rawValue, "mean_mae_ratio": mean,
                    "fold_mae_ratios": Dictionary(uniqueKeysWithValues: results.map { ($0.name, $0.evaluation.maeRatio) }),
                ])
            } else {
                print(String(format: "mean mae_ratio over %d %@ folds of the training split: %.3f", results.count,
                             folds.rawValue, mean))
            }
        }
    }
}

extension PredictCommand {
    struct Compare: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Train the bucketed logistic regression and boosted stumps on the same split and compare them on the held-out part.")

        @OptionGroup var dataOptions: DataOptions
        @Option(help: "Passes of the logistic regression.")
        var epochs = 6
        @Option(help: "Boosting rounds of the stumps.")
        var rounds = 400
        @Option(name: .customLong("leading-tokens"), help: "Words and symbols read from the start of a prompt.")
        var leadingTokens = FeatureHashingConfig().leadingTokens
        @Option(name: .customLong("trailing-tokens"), help: "Words and symbols read from the end of a long prompt.")
        var trailingTokens = FeatureHashingConfig().trailingTokens
        @Flag(help: "Print one JSON object on stdout.")
        var json = false

        func run() throws {
            let (set, format) = try dataOptions.load()
            let training = set.training, heldOut = set.heldOut
            guard !training.isEmpty, !heldOut.isEmpty else { throw CLIError("the split leaves one side empty") }
            var hashing = FeatureHashingConfig()
            hashing.leadingTokens = leadingTokens
            hashing.trailingTokens = trailingTokens
            var lrOptions = TextTrainingOptions()
            lrOptions.hashing = hashing
            lrOptions.epochs = epochs
            var stumpOptions = StumpTrainingOptions()
            stumpOptions.hashing = hashing
            stumpOptions.rounds = rounds
            let sorted = training.map(\.target).sorted()
            let mean = sorted.reduce(0, +) / Double(sorted.count)
            let median = TextLengthTrainer.quantile(sorted, 0.5)
            let upper = TextLengthTrainer.quantile(sorted, 0.9)
            var results: [String: Any] = ["format": format.rawValue, "train_examples": training.count,
                                          "held_out_examples": heldOut.count]
            func evaluate(_ name: String, _ predictor: any OutputLengthPredictor, seconds: Double) throws {
                let e = LengthEvaluator.evaluate(predictor, examples: heldOut, buckets: .standard, trainingMean: mean,
                                                 trainingMedian: median, trainingQuantile: upper, reserveQuantile: 0.9)
                let encoder = JSONEncoder()
                var object = (try JSONSerialization.jsonObject(with: try encoder.encode(e))) as? [String: Any] ?? [:]
                object["train_seconds"] = seconds
                object["ns_per_prediction"] = PredictorBench.nanosecondsPerPrediction(
                    predictor, inputs: Array(heldOut.prefix(2000)).map(\.input))
                results[name] = object
                note(String(format: "%@: MAE %.1f (baseline %.1f, ratio %.3f), bucket accuracy %.3f, underpredict %.3f, mean reserve %.1f, trained in %.1f s",
                           name, e.mae, e.baselineMAE, e.maeRatio, e.bucketAccuracy, e.underpredictRate, e.meanReserve, seconds))
            }
            do {
                var start = Date()
                let model = try TextLengthTrainer.train(training, options: lrOptions)
                try evaluate("logistic", TextLengthPredictor(model: model, onlineLearningRate: 0),
                             seconds: Date().timeIntervalSince(start))
                start = Date()
                let stumps = try BoostedStumpsTrainer.train(training, options: stumpOptions) { round, mse in
                    note(String(format: "stumps round %d: training MSE (log space) %.4f", round, mse))
                }
                try evaluate("stumps", stumps, seconds: Date().timeIntervalSince(start))
            } catch let error as LengthTrainingError {
                throw CLIError(error.description)
            }
            if json { try JSONReport.print(results) }
        }
    }
}

extension PredictCommand {
    struct Bench: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Measure the CPU time of one prediction (text and history predictors) on synthetic prompts.")

        @Option(name: .customLong("prompt-words"), help: "Mean words per synthetic prompt.")
        var promptWords = 60
        @Option(name: .customLong("hash-bits"), help: "log2 of the feature space size (8...24).")
        var hashBits = FeatureHashingConfig().hashBits
        @Flag(help: "Print one JSON object on stdout.")
        var json = false

        func run() throws {
            var hashing = FeatureHashingConfig()
            hashing.hashBits = hashBits
            guard promptWords >= 1, hashing.isValid else { throw CLIError("--prompt-words must be >= 1, --hash-bits in 8...24") }
            let r = PredictorBench.run(promptWords: promptWords, hashing: hashing)
            if json {
                try JSONReport.print(["text_ns_per_prediction": r.textNanoseconds, "history_ns_per_prediction": r.historyNanoseconds,
                           "mean_prompt_words": r.meanPromptWords])
            } else {
                print(String(format: "text predictor: %.0f ns per prediction (%.0f-word prompts); history predictor: %.0f ns",
                             r.textNanoseconds, r.meanPromptWords, r.historyNanoseconds))
            }
        }
    }
}
