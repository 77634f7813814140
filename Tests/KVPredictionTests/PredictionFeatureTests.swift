import Testing
import KVData
@testable import KVPrediction
import KVScheduler

@Suite("Prediction: feature hashing")
struct PredictionFeatureTests {
    static func features(_ input: PredictionInput, config: FeatureHashingConfig = .init(hashBits: 16)) -> [(Int32, Float)] {
        let vector = FeatureVector(config: config)
        FeatureHasher(config: config).extract(input, into: vector)
        return (0..<vector.count).map { (vector.indices[$0], vector.values[$0]) }
    }

    @Test func stableHashMatchesPublishedFNV1a() {
        #expect(StableHash.fnv1a("hello") == 0xa430_d846_80aa_bd0b)
        #expect(StableHash.fnv1a("") == StableHash.fnvOffset)
    }

    @Test func hashingIsDeterministicAcrossInstances() {
        let input = PredictionInput(promptTokens: 42, promptText: "Write a short poem about the sea, please!",
                                    templateKey: 7, modelID: "llama", maxTokens: 512)
        let a = Self.features(input)
        let b = Self.features(input)
        #expect(a.map(\.0) == b.map(\.0))
        #expect(a.map(\.1) == b.map(\.1))
        #expect(a.allSatisfy { $0.0 >= 0 && $0.0 < 1 << 16 })
    }

    @Test func asciiCaseDoesNotMatterButWordsDo() {
        let lower = Self.features(PredictionInput(promptTokens: 5, promptText: "explain the theory", maxTokens: 64))
        let upper = Self.features(PredictionInput(promptTokens: 5, promptText: "Explain THE Theory", maxTokens: 64))
        let other = Self.features(PredictionInput(promptTokens: 5, promptText: "list the theory", maxTokens: 64))
        #expect(lower.map(\.0) == upper.map(\.0))
        #expect(lower.map(\.0) != other.map(\.0))
    }

    @Test func modelCrossesAndBigramsAddFeatures() {
        let text = "one two three four"
        let plain = Self.features(PredictionInput(promptTokens: 4, promptText: text, maxTokens: 64),
                                  config: .init(hashBits: 16, bigrams: false, modelCrosses: true, promptShape: false))
        let bigrams = Self.features(PredictionInput(promptTokens: 4, promptText: text, maxTokens: 64),
                                    config: .init(hashBits: 16, bigrams: true, modelCrosses: true, promptShape: false))
        let crossed = Self.features(PredictionInput(promptTokens: 4, promptText: text, modelID: "m", maxTokens: 64),
                                    config: .init(hashBits: 16, bigrams: true, modelCrosses: true, promptShape: false))
        // 4 unigrams + 4 fixed indicators; + 3 bigrams; + 4 crosses + 2 model indicators.
        #expect(plain.count == 8)
        #expect(bigrams.count == 11)
        #expect(crossed.count == 17)
    }

    @Test func crossScaleWeighsModelCrossesAgainstTheirWords() {
        let input = PredictionInput(promptTokens: 3, promptText: "three short words", modelID: "m", maxTokens: 64)
        let one = Self.features(input, config: .init(hashBits: 16, bigrams: false))
        let quarter = Self.features(input, config: .init(hashBits: 16, bigrams: false, modelCrossScale: 0.25))
        #expect(one.map(\.0) == quarter.map(\.0))
        // Word, cross, word, cross, ...: the words keep 1/sqrt(3), the crosses get a quarter of it.
        let word = 1 / Float(3).squareRoot()
        for i in 0..<6 {
            #expect(abs(one[i].1 - word) < 1e-6)
            #expect(abs(quarter[i].1 - (i % 2 == 0 ? word : word / 4)) < 1e-6)
        }
        #expect(!FeatureHashingConfig(modelCrossScale: 0).isValid)
        #expect(!FeatureHashingConfig(modelCrossScale: .nan).isValid)
    }

    @Test func longPromptsAreBoundedAndKeepTheirTail() {
        let config = FeatureHashingConfig(hashBits: 16, leadingTokens: 8, trailingTokens: 4)
        let filler = Array(repeating: "filler", count: 5000).joined(separator: " ")
        let a = Self.features(PredictionInput(promptTokens: 6000, promptText: filler + " summarise this", maxTokens: 64),
                              config: config)
        let b = Self.features(PredictionInput(promptTokens: 6000, promptText: filler + " translate this", maxTokens: 64),
                              config: config)
        #expect(a.count <= config.maxFeatures)
        #expect(a.map(\.0) != b.map(\.0))   // the instruction at the end is seen
    }

    @Test func promptShapeNotesFirstWordQuestionsLinesCodeAndRequestedCounts() {
        let hasher = FeatureHasher(config: .init(hashBits: 16))
        let prose = hasher.shape(of: "Write 3 short sentences about the sea. Why is it blue?\nAnd why salty?")
        #expect(prose.firstWord == StableHash.fnv1a("write"))
        #expect(prose.requestedCount == 3 && prose.requestedUnit == StableHash.fnv1a("sentences"))
        #expect(prose.questionMarks == 2 && prose.lines == 1 && prose.codeSymbols == 0)
        let code = hasher.shape(of: "def f(x):\n    return {x: [x]}  # give 3-5 examples")
        #expect(code.firstWord == StableHash.fnv1a("def"))
        #expect(code.codeSymbols == 7)     // ( ) { [ ] } #
        #expect(code.requestedCount == 5 && code.requestedUnit == StableHash.fnv1a("examples"))
        #expect(hasher.shape(of: "Name 100 cats").requestedCount == -1)      // "cats" is no unit
        #expect(hasher.shape(of: "list the 3, then 4 items").requestedCount == 4)
        #expect(hasher.shape(of: "? 12").firstWord == StableHash.fnv1a("12"))
        #expect(hasher.shape(of: "").firstWord == 0)
    }

    @Test func promptShapeAddsFeaturesThatSeparateRequests() {
        let on = FeatureHashingConfig(hashBits: 16, bigrams: false, modelCrosses: false, promptShape: true)
        let off = FeatureHashingConfig(hashBits: 16, bigrams: false, modelCrosses: false, promptShape: false)
        let text = "Write a poem?"
        let plain = Self.features(PredictionInput(promptTokens: 4, promptText: text, maxTokens: 64), config: off)
        let shaped = Self.features(PredictionInput(promptTokens: 4, promptText: text, maxTokens: 64), config: on)
        let modelled = Self.features(PredictionInput(promptTokens: 4, promptText: text, modelID: "m", maxTokens: 64),
                                     config: on)
        // first word, question bin, line bin, code bin; with a model also (model x code bin) and 2 model indicators.
        #expect(shaped.count == plain.count + 4)
        #expect(modelled.count == shaped.count + 3)
        #expect(Set(plain.map(\.0)).isSubset(of: Set(shaped.map(\.0))))
        // A requested count adds one more, and its bin tells 3 from 300.
        let three = Self.features(PredictionInput(promptTokens: 4, promptText: "Write 3 words", maxTokens: 64), config: on)
        let many = Self.features(PredictionInput(promptTokens: 4, promptText: "Write 300 words", maxTokens: 64), config: on)
        let none = Self.features(PredictionInput(promptTokens: 4, promptText: "Write 300 cats", maxTokens: 64), config: on)
        #expect(three.count == none.count + 1 && many.count == none.count + 1)
        #expect(Set(three.map(\.0)).subtracting(many.map(\.0)).count == 2)   // the number word and the request
        // The shape of long prompts stays within the bound.
        let long = String(repeating: "{x}; why?\n", count: 3000)
        #expect(Self.features(PredictionInput(promptTokens: 9000, promptText: long, modelID: "m", maxTokens: 64),
                              config: .init(hashBits: 16, leadingTokens: 8, trailingTokens: 4, promptShape: true)).count
                <= FeatureHashingConfig(hashBits: 16, leadingTokens: 8, trailingTokens: 4).maxFeatures)
    }

    @Test func emptyInputStillHasIndicators() {
        let f = Self.features(PredictionInput(promptTokens: 0, maxTokens: 1))
        #expect(f.count == 4)
    }
}

@Suite("Prediction: buckets and token counts")
struct PredictionBucketTests {
    @Test func bucketsCoverEveryLength() {
        let b = LengthBuckets.standard
        #expect(b.bucket(of: 0) == 0)
        #expect(b.bucket(of: 7.9) == 0)
        #expect(b.bucket(of: 8) == 1)
        #expect(b.bucket(of: 1e9) == b.count - 1)
        #expect(LengthBuckets(lowerBounds: [1, 2]) == nil)
        #expect(LengthBuckets(lowerBounds: [0, 5, 5]) == nil)
    }

    @Test func approximateTokenCounts() {
        #expect(ApproximateTokenCounter.count("") == 0)
        #expect(ApproximateTokenCounter.count("hello world") == 2)
        #expect(ApproximateTokenCounter.count("1234567") == 3)
        #expect(ApproximateTokenCounter.count("a, b.") == 4)
        #expect(ApproximateTokenCounter.count("----------------") == 4)
        #expect(ApproximateTokenCounter.count("internationalization") == 4)
        #expect(ApproximateTokenCounter.count("日本語") == 3)
        #expect(ApproximateTokenCounter.count("line\nline") == 3)
    }
}
