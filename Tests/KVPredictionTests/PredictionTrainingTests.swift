import KVCache
import Testing
import KVData
@testable import KVPrediction
import KVScheduler

/// A synthetic task where the output length depends on the words of the prompt.
enum SyntheticLengths {
    static let kinds: [(word: String, length: Int)] = [("haiku", 12), ("summary", 90), ("essay", 700), ("list", 220)]
    static let noise = ["please", "about", "the", "ocean", "city", "history", "cats", "music", "a", "an", "my", "our"]

    static func examples(count: Int, seed: UInt64, heldOut: Bool) -> [LengthExample] {
        var rng = SplitMix64(seed: seed)
        return (0..<count).map { i in
            let kind = kinds[Int(rng.next() % UInt64(kinds.count))]
            var words = (0..<(3 + Int(rng.next() % 6))).map { _ in noise[Int(rng.next() % UInt64(noise.count))] }
            words.insert(kind.word, at: Int(rng.next() % UInt64(words.count + 1)))
            let jitter = Double(Int(rng.next() % 21) - 10) / 100   // +-10%
            let target = Double(kind.length) * (1 + jitter)
            let samples = (0..<4).map { _ in Int32(Double(kind.length) * (0.9 + Double(rng.next() % 21) / 100)) }
            let input = PredictionInput(promptTokens: words.count + 2, promptText: words.joined(separator: " "),
                                        maxTokens: 4096)
            return LengthExample(input: input, target: target, samples: samples, group: "\(seed)-\(i)",
                                 heldOut: heldOut)
        }
    }

    static var options: TextTrainingOptions {
        var o = TextTrainingOptions()
        o.hashing = FeatureHashingConfig(hashBits: 12)
        o.epochs = 4
        return o
    }
}

@Suite("Prediction: text predictor training")
struct PredictionTrainingTests {
    @Test func learnsWordDependentLengthsAndBeatsTheMeanBaseline() throws {
        let train = SyntheticLengths.examples(count: 600, seed: 1, heldOut: false)
        let test = SyntheticLengths.examples(count: 200, seed: 2, heldOut: true)
        let model = try TextLengthTrainer.train(train, options: SyntheticLengths.options)
        let predictor = TextLengthPredictor(model: model, onlineLearningRate: 0)
        let e = LengthEvaluator.evaluate(predictor, examples: test, buckets: model.buckets,
                                         trainingMean: model.trainingMean, trainingMedian: model.trainingMedian,
                                         trainingQuantile: model.trainingQuantile,
                                         reserveQuantile: model.reserveQuantile)
        #expect(e.examples == 200)
        #expect(e.mae < 0.35 * e.baselineMAE)
        #expect(e.bucketAccuracy > e.baselineBucketAccuracy + 0.3)
        #expect(e.underpredictRate < 0.25)
        #expect(e.meanReserve < e.baselineQuantileMeanReserve)
        let essay = predictor.predict(PredictionInput(promptTokens: 5, promptText: "an essay about cats", maxTokens: 4096))
        let haiku = predictor.predict(PredictionInput(promptTokens: 5, promptText: "a haiku about cats", maxTokens: 4096))
        #expect(essay.expected > 4 * haiku.expected)
        #expect(essay.bucket > haiku.bucket)
    }

    @Test func predictionsRespectMaxTokensAndReserveAtLeastExpected() throws {
        let model = try TextLengthTrainer.train(SyntheticLengths.examples(count: 200, seed: 3, heldOut: false),
                                                options: SyntheticLengths.options)
        let predictor = TextLengthPredictor(model: model)
        for limit in [1, 50, 5000] {
            let p = predictor.predict(PredictionInput(promptTokens: 4, promptText: "an essay please", maxTokens: limit))
            #expect(p.expected >= 1 && p.expected <= limit)
            #expect(p.reserve >= p.expected && p.reserve <= limit)
        }
        let p = predictor.predict(PredictionInput(promptTokens: 4, promptText: "an essay please", maxTokens: 0))
        #expect(p.expected == 1 && p.reserve == 1)
    }

    @Test func trainingIsReproducibleAndRejectsBadOptions() throws {
        let data = SyntheticLengths.examples(count: 100, seed: 4, heldOut: false)
        let a = try TextLengthTrainer.train(data, options: SyntheticLengths.options)
        let b = try TextLengthTrainer.train(data, options: SyntheticLengths.options)
        #expect(a.weights == b.weights)
        #expect(throws: LengthTrainingError.noExamples) { try TextLengthTrainer.train([], options: SyntheticLengths.options) }
        var bad = SyntheticLengths.options
        bad.reserveQuantile = 1.5
        #expect(throws: LengthTrainingError.self) { try TextLengthTrainer.train(data, options: bad) }
    }

    @Test func onlineObservationMovesTowardsTheTruth() throws {
        let model = try TextLengthTrainer.train(SyntheticLengths.examples(count: 300, seed: 5, heldOut: false),
                                                options: SyntheticLengths.options)
        let predictor = TextLengthPredictor(model: model, onlineLearningRate: 0.5)
        let input = PredictionInput(promptTokens: 4, promptText: "a haiku about music", maxTokens: 4096)
        let before = predictor.predict(input).expected
        for _ in 0..<40 { predictor.observe(input, actualOutput: 2000) }
        #expect(predictor.predict(input).expected > 4 * before)
    }

    @Test func saveLoadRoundTripGivesIdenticalPredictions() throws {
        let train = SyntheticLengths.examples(count: 300, seed: 6, heldOut: false)
        var options = SyntheticLengths.options
        options.expectedStatistic = .quantile
        options.expectedQuantile = 0.4
        options.reserveQuantile = 0.8
        let model = try TextLengthTrainer.train(train, options: options)
        let bytes = TextLengthModelFile.encode(model)
        let loaded = try TextLengthModelFile.decode(bytes)
        #expect(loaded.weights == model.weights)
        #expect(loaded.bucketMeans == model.bucketMeans)
        #expect(loaded.expectedStatistic == .quantile && loaded.expectedQuantile == 0.4 && loaded.reserveQuantile == 0.8)
        #expect(loaded.trainingMean == model.trainingMean)
        #expect(TextLengthModelFile.encode(loaded) == bytes)
        let a = TextLengthPredictor(model: model), b = TextLengthPredictor(model: loaded)
        for example in SyntheticLengths.examples(count: 50, seed: 7, heldOut: true) {
            let p = a.predict(example.input), q = b.predict(example.input)
            #expect(p == q)
            #expect(a.bucketProbabilities(example.input) == b.bucketProbabilities(example.input))
        }
        // Only touched rows are stored.
        #expect(bytes.count < model.weights.count)
    }

    @Test func damagedModelFilesAreRejected() throws {
        let model = try TextLengthTrainer.train(SyntheticLengths.examples(count: 50, seed: 8, heldOut: false),
                                                options: SyntheticLengths.options)
        let bytes = TextLengthModelFile.encode(model)
        /// The error decoding `data` throws, nil when it decodes (the model itself is not printed).
        func failure(_ data: [UInt8]) -> LengthModelError? {
            do { _ = try TextLengthModelFile.decode(data); return nil } catch { return error }
        }
        #expect(failure(bytes) == nil)
        #expect(failure(Array(bytes.dropLast(3))) != nil)
        #expect(failure([0x00, 0x00] + Array(bytes.dropFirst(2))) == .corrupt("not a length model (bad magic)"))
        #expect(failure([]) != nil)
        var wrongVersion = bytes
        wrongVersion[4] = 9
        #expect(failure(wrongVersion) == .unsupportedVersion(9))
        var versionOne = bytes
        versionOne[4] = 1                 // before prompt-shape features: hashed differently
        #expect(failure(versionOne) == .unsupportedVersion(1))
        #expect(LengthModelError.unsupportedVersion(1).description.contains("retrain"))
        var nan = bytes
        let tail = nan.count - 4
        nan[tail] = 0xff; nan[tail + 1] = 0xff; nan[tail + 2] = 0xc0; nan[tail + 3] = 0x7f
        #expect(failure(nan) != nil)
        #expect(failure(bytes + [0]) != nil)
        #expect(throws: LengthModelError.self) { try TextLengthModelFile.load(from: "/nonexistent/model.kvlp") }
    }

    @Test func evaluationOfAPerfectPredictor() {
        final class Exact: OutputLengthPredictor {
            var table: [String: Int] = [:]
            func predict(_ input: PredictionInput) -> LengthPrediction {
                let t = table[input.promptText ?? ""] ?? 0
                return LengthPrediction(expected: t, reserve: t, bucket: LengthBuckets.standard.bucket(of: Double(t)))
            }
            func observe(_ input: PredictionInput, actualOutput: Int) {}
        }
        let exact = Exact()
        let examples = (1...20).map { i -> LengthExample in
            exact.table["p\(i)"] = i * 30
            return LengthExample(input: PredictionInput(promptTokens: 3, promptText: "p\(i)", maxTokens: 4096),
                                 target: Double(i * 30), samples: [Int32(i * 30)], group: "g\(i)", heldOut: true)
        }
        let e = LengthEvaluator.evaluate(exact, examples: examples, buckets: .standard, trainingMean: 315,
                                         trainingMedian: 315, trainingQuantile: 540, reserveQuantile: 0.9)
        #expect(e.mae == 0 && e.bucketAccuracy == 1 && e.underpredictRate == 0 && e.maeRatio == 0)
        #expect(e.baselineMAE == 150)
        #expect(e.baselineUnderpredictRate == 0.5)
        #expect(e.baselineQuantileUnderpredictRate == 0.1)
        var tagged = examples
        for i in tagged.indices where i < 15 { tagged[i].source = i < 5 ? "short" : "long" }
        let bySource = LengthEvaluator.evaluateBySource(exact, examples: tagged, buckets: .standard, trainingMean: 315,
                                                        trainingMedian: 315, trainingQuantile: 540, reserveQuantile: 0.9)
        #expect(bySource.keys.sorted() == ["long", "short"])
        #expect(bySource["short"]?.examples == 5 && bySource["long"]?.examples == 10)
        #expect(abs((bySource["short"]?.baselineMAE ?? 0) - 225) < 1e-9)   // targets 30...150 against 315
    }
}

@Suite("Prediction: boosted stumps (the compared alternative)")
struct PredictionStumpTests {
    @Test func stumpsLearnWordDependentLengths() throws {
        var options = StumpTrainingOptions()
        options.hashing = FeatureHashingConfig(hashBits: 12)
        options.rounds = 60
        options.minLeaf = 5
        let train = SyntheticLengths.examples(count: 400, seed: 21, heldOut: false)
        let test = SyntheticLengths.examples(count: 100, seed: 22, heldOut: true)
        let stumps = try BoostedStumpsTrainer.train(train, options: options)
        let targets = train.map(\.target).sorted()
        let mean = targets.reduce(0, +) / Double(targets.count)
        let e = LengthEvaluator.evaluate(stumps, examples: test, buckets: .standard, trainingMean: mean,
                                         trainingMedian: TextLengthTrainer.quantile(targets, 0.5),
                                         trainingQuantile: TextLengthTrainer.quantile(targets, 0.9),
                                         reserveQuantile: 0.9)
        #expect(e.mae < 0.5 * e.baselineMAE)
        let essay = stumps.predict(PredictionInput(promptTokens: 5, promptText: "an essay about cats", maxTokens: 4096))
        let haiku = stumps.predict(PredictionInput(promptTokens: 5, promptText: "a haiku about cats", maxTokens: 4096))
        #expect(essay.expected > 4 * haiku.expected)
        #expect(essay.reserve >= essay.expected)
        // A repeated word counts once, as in training.
        let repeated = stumps.predict(PredictionInput(promptTokens: 5, promptText: "essay essay essay", maxTokens: 4096))
        #expect(repeated.expected > haiku.expected)
        var bad = options
        bad.rounds = 0
        #expect(throws: LengthTrainingError.self) { try BoostedStumpsTrainer.train(train, options: bad) }
    }
}

@Suite("Prediction: reserve calibration")
struct PredictionCalibrationTests {
    @Test func calibratorSettlesAtTheTargetRate() {
        var c = ReserveCalibrator(quantile: 0.9, step: 0.05)
        #expect(c.apply(100, floor: 1, limit: 1000) == 100)
        // Every request outgrows a reserve of 100 until the scale has grown past 2x.
        for _ in 0..<400 {
            let reserve = c.apply(100, floor: 1, limit: 100_000)
            c.record(reserve: reserve, actual: 200)
        }
        #expect(c.scale > 1.9 && c.scale < 2.3)
        #expect(c.apply(1e9, floor: 1, limit: 50) == 50)
        #expect(c.apply(0, floor: 7, limit: 50) == 7)
    }

    @Test func textPredictorReservesAdaptToLongerOutputsThanTrainedOn() throws {
        let model = try TextLengthTrainer.train(SyntheticLengths.examples(count: 400, seed: 31, heldOut: false),
                                                options: SyntheticLengths.options)
        /// Share of the last 500 of 1500 shifted requests (outputs 3x the trained lengths) outgrowing their reserve.
        func lateUnderpredictRate(calibrate: Bool) -> Double {
            let predictor = TextLengthPredictor(model: model, onlineLearningRate: 0, calibrateReserve: calibrate)
            let stream = SyntheticLengths.examples(count: 1500, seed: 32, heldOut: true)
            var under = 0
            for (i, example) in stream.enumerated() {
                let actual = Int(example.target * 3)
                if i >= 1000 && actual > predictor.predict(example.input).reserve { under += 1 }
                predictor.observe(example.input, actualOutput: actual)
            }
            return Double(under) / 500
        }
        #expect(lateUnderpredictRate(calibrate: false) > 0.8)
        #expect(lateUnderpredictRate(calibrate: true) < 0.25)
    }
}

@Suite("Prediction: validation inside the training split")
struct PredictionCrossValidationTests {
    /// Synthetic examples tagged with one of `sources` in turn.
    static func tagged(_ count: Int, seed: UInt64, sources: [String]) -> [LengthExample] {
        SyntheticLengths.examples(count: count, seed: seed, heldOut: false).enumerated().map { i, example in
            var e = example
            e.source = sources[i % sources.count]
            return e
        }
    }

    @Test func sourceFoldsHoldOutOneSourceEachAndHashFoldsPartitionGroups() throws {
        let examples = Self.tagged(90, seed: 21, sources: ["b", "a", "c"])
        let bySource = try LengthCrossValidation.folds(examples, rule: .source)
        #expect(bySource.map(\.name) == ["a", "b", "c"])
        for fold in bySource {
            #expect(fold.heldOut.count == 30)
            #expect(fold.heldOut.allSatisfy { examples[$0].source == fold.name })
        }
        let byHash = try LengthCrossValidation.folds(examples, rule: .hash(4))
        #expect(byHash.flatMap(\.heldOut).sorted() == Array(examples.indices))
        var foldOfGroup: [String: String] = [:]
        for fold in byHash {
            for i in fold.heldOut {
                let group = examples[i].group
                #expect(foldOfGroup[group, default: fold.name] == fold.name)
                foldOfGroup[group] = fold.name
            }
        }
        // Cell folds: no held-out prompt and no held-out (model, source) cell is trained on.
        var models = examples
        for i in models.indices { models[i].input.modelID = "m\(i % 5)" }
        let byCell = try LengthCrossValidation.folds(models, rule: .cell(3))
        #expect(!byCell.isEmpty && byCell.allSatisfy { !$0.heldOut.isEmpty && !$0.training.isEmpty })
        for fold in byCell {
            let trainedGroups = Set(fold.training.map { models[$0].group })
            let trainedCells = Set(fold.training.map { "\(models[$0].input.modelID!)|\(models[$0].source!)" })
            #expect(fold.heldOut.allSatisfy { !trainedGroups.contains(models[$0].group) })
            #expect(fold.heldOut.allSatisfy { !trainedCells.contains("\(models[$0].input.modelID!)|\(models[$0].source!)") })
        }
        var unnamed = examples
        unnamed[5].source = nil
        #expect(throws: LengthTrainingError.self) { try LengthCrossValidation.folds(unnamed, rule: .source) }
        #expect(throws: LengthTrainingError.self) { try LengthCrossValidation.folds(unnamed, rule: .cell(3)) }
        #expect(throws: LengthTrainingError.self) { try LengthCrossValidation.folds(examples, rule: .hash(1)) }
        #expect(throws: LengthTrainingError.self) {
            try LengthCrossValidation.folds(Self.tagged(10, seed: 1, sources: ["only"]), rule: .source)
        }
    }

    @Test func eachFoldIsEvaluatedOnItsOwnExamplesAgainstItsOwnBaseline() throws {
        let examples = Self.tagged(300, seed: 22, sources: ["x", "y", "z"])
        let results = try LengthCrossValidation.run(examples, rule: .source, options: SyntheticLengths.options)
        #expect(results.map(\.name) == ["x", "y", "z"])
        #expect(results.allSatisfy { $0.evaluation.examples == 100 && $0.trainExamples == 200 })
        // The words decide the lengths in every source alike, so each held-out source is predicted well.
        #expect(results.allSatisfy { $0.evaluation.maeRatio < 0.5 })
        let mean = LengthCrossValidation.meanRatio(results)
        #expect(abs(mean - results.map(\.evaluation.maeRatio).reduce(0, +) / 3) < 1e-12)
    }

    @Test func balancedWeightsMakeEverySourceCountTheSame() throws {
        let examples = Self.tagged(8, seed: 23, sources: ["a", "a", "a", "b"])
        let weights = TextLengthTrainer.sourceWeights(examples)
        #expect(weights.enumerated().allSatisfy { i, w in abs(w - (i % 4 == 3 ? 2 : 2 / 3)) < 1e-6 })
        #expect(abs(weights.reduce(0, +) - 8) < 1e-5)
        // With one source the weights are all 1: training is unchanged.
        let single = Self.tagged(120, seed: 24, sources: ["a"])
        var balanced = SyntheticLengths.options
        balanced.balanceSources = true
        #expect(try TextLengthTrainer.train(single, options: balanced).weights
                == TextLengthTrainer.train(single, options: SyntheticLengths.options).weights)
        // With a small source, balancing moves the model towards it.
        let unbalanced = try TextLengthTrainer.train(examples, options: SyntheticLengths.options).weights
        #expect(try TextLengthTrainer.train(examples, options: balanced).weights != unbalanced)
    }
}
