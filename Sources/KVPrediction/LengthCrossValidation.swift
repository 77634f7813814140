import KVData
import KVScheduler

/// How the training split is cut into validation folds. Each fold holds out whole groups (prompts
/// or conversations), never single rows.
public enum ValidationFolds: Sendable, Equatable {
    /// One fold per source data set: train on the other sources, validate on this one. Measures how
    /// a model carries over to prompts unlike the ones it was trained on (CASTILLO's own validate
    /// split holds sources that training barely has).
    case source
    /// `k` folds by a stable hash of the group id: prompts like the training ones.
    case hash(Int)
    /// `k` folds of (model, source) cells: fold `i` evaluates the cells whose hash falls in it, on
    /// the prompts whose hash falls in it, and trains on every other cell of every other prompt.
    /// Measures a model on a source it was never trained on for that model, when other models
    /// were (CASTILLO's train split covers some sources with one model only).
    case cell(Int)
}

/// One validation fold's outcome.
public struct ValidationFoldResult: Sendable {
    /// The held-out source, or `hash i/k`.
    public var name: String
    public var trainExamples: Int
    public var evaluation: LengthEvaluation
}

/// Chooses features and hyper-parameters without touching the held-out split: cross-validation
/// inside the training examples.
public enum LengthCrossValidation {
    /// One fold: the examples evaluated and those trained on (for `cell` folds some examples are
    /// neither, so that no prompt and no cell lies on both sides).
    public struct Fold: Sendable {
        public var name: String
        public var heldOut: [Int]
        public var training: [Int]
    }

    /// The folds of `examples`, in a stable order (sources sorted by name, hash and cell folds by
    /// number). Throws when a fold rule cannot apply (no source on some example, fewer than two
    /// sources or groups, `k` outside 2...100).
    ///
    /// - Complexity: O(n x folds).
    public static func folds(_ examples: [LengthExample], rule: ValidationFolds) throws(LengthTrainingError) -> [Fold] {
        let named = try heldOutFolds(examples, rule: rule)
        return named.map { fold in
            var isHeldOut = [Bool](repeating: false, count: examples.count)
            for i in fold.heldOut { isHeldOut[i] = true }
            var training: [Int] = []
            if case let .cell(k) = rule {
                let number = fold.number
                for i in examples.indices where groupFold(examples[i], k) != number && cellFold(examples[i], k) != number {
                    training.append(i)
                }
            } else {
                training = examples.indices.filter { !isHeldOut[$0] }
            }
            return Fold(name: fold.name, heldOut: fold.heldOut, training: training)
        }
    }

    static func groupFold(_ example: LengthExample, _ k: Int) -> Int {
        Int(StableHash.mix(StableHash.fnv1a(example.group)) % UInt64(k))
    }

    static func cellFold(_ example: LengthExample, _ k: Int) -> Int {
        let cell = StableHash.combine(StableHash.fnv1a(example.input.modelID ?? ""), StableHash.fnv1a(example.source ?? ""))
        return Int(StableHash.mix(cell) % UInt64(k))
    }

    static func heldOutFolds(_ examples: [LengthExample],
                             rule: ValidationFolds) throws(LengthTrainingError) -> [(name: String, number: Int, heldOut: [Int])] {
        switch rule {
        case .source:
            var bySource: [String: [Int]] = [:]
            for (i, example) in examples.enumerated() {
                guard let source = example.source else {
                    throw .invalidOption("source folds need a source on every example (CASTILLO's dataset field)")
                }
                bySource[source, default: []].append(i)
            }
            guard bySource.count >= 2 else { throw .invalidOption("source folds need at least two sources") }
            return bySource.keys.sorted().enumerated().map { (name: $1, number: $0, heldOut: bySource[$1]!) }
        case let .hash(k), let .cell(k):
            guard (2...100).contains(k) else { throw .invalidOption("hash and cell folds need k in 2...100") }
            var byFold = [[Int]](repeating: [], count: k)
            let cells = if case .cell = rule { true } else { false }
            if cells, examples.contains(where: { $0.source == nil }) {
                throw .invalidOption("cell folds need a source on every example (CASTILLO's dataset field)")
            }
            for (i, example) in examples.enumerated() {
                let f = groupFold(example, k)
                if !cells || cellFold(example, k) == f { byFold[f].append(i) }
            }
            let folds = byFold.enumerated().filter { !$0.element.isEmpty }
            guard folds.count >= 2 else { throw .invalidOption("hash and cell folds need at least two non-empty folds") }
            let kind = cells ? "cell" : "hash"
            return folds.map { (name: "\(kind) \($0.offset + 1)/\(k)", number: $0.offset, heldOut: $0.element) }
        }
    }

    /// Trains one model per fold on the other folds and evaluates it (statically, no online
    /// learning) on the fold, against the fold's own training-mean baseline.
    ///
    /// - Complexity: folds x one `TextLengthTrainer.train` on the rest.
    public static func run(_ examples: [LengthExample], rule: ValidationFolds, options: TextTrainingOptions,
                           progress: ((ValidationFoldResult) -> Void)? = nil) throws(LengthTrainingError) -> [ValidationFoldResult] {
        var results: [ValidationFoldResult] = []
        for fold in try folds(examples, rule: rule) {
            let training = fold.training.map { examples[$0] }
            let model = try TextLengthTrainer.train(training, options: options)
            let predictor = TextLengthPredictor(model: model, onlineLearningRate: 0, calibrateReserve: false)
            let evaluation = LengthEvaluator.evaluate(
                predictor, examples: fold.heldOut.map { examples[$0] }, buckets: model.buckets,
                trainingMean: model.trainingMean, trainingMedian: model.trainingMedian,
                trainingQuantile: model.trainingQuantile, reserveQuantile: model.reserveQuantile)
            let result = ValidationFoldResult(name: fold.name, trainExamples: training.count, evaluation: evaluation)
            progress?(result)
            results.append(result)
        }
        return results
    }

    /// The mean `maeRatio` over folds, each fold weighing the same: the figure to minimise when
    /// tuning. O(folds).
    public static func meanRatio(_ results: [ValidationFoldResult]) -> Double {
        results.isEmpty ? 0 : results.map(\.evaluation.maeRatio).reduce(0, +) / Double(results.count)
    }
}
