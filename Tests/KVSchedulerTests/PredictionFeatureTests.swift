import Testing
@testable import KVScheduler

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
                                  config: .init(hashBits: 16, bigrams: false, modelCrosses: true))
        let bigrams = Self.features(PredictionInput(promptTokens: 4, promptText: text, maxTokens: 64),
                                    config: .init(hashBits: 16, bigrams: true, modelCrosses: true))
        let crossed = Self.features(PredictionInput(promptTokens: 4, promptText: text, modelID: "m", maxTokens: 64),
                                    config: .init(hashBits: 16, bigrams: true, modelCrosses: true))
        // 4 unigrams + 4 fixed indicators; + 3 bigrams; + 4 crosses + 2 model indicators.
        #expect(plain.count == 8)
        #expect(bigrams.count == 11)
        #expect(crossed.count == 17)
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
