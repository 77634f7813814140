import KVData
import KVScheduler

/// How prompt text and metadata become hashed features.
public struct FeatureHashingConfig: Sendable, Equatable, Codable {
    /// The feature space has `1 << hashBits` slots.
    public var hashBits: Int = 18
    /// Words and symbols read from the start of the prompt.
    public var leadingTokens: Int = 64
    /// Words and symbols read from the end of the prompt (after the leading ones), where the
    /// instruction of a long prompt often is.
    public var trailingTokens: Int = 48
    /// Adds word bigrams to the unigrams.
    public var bigrams: Bool = true
    /// Adds (model id x word) features, so that each model can weigh words its own way.
    public var modelCrosses: Bool = true
    /// The value of a (model x word) feature relative to the word's own. Below 1, the penalty and
    /// the step sizes favour the shared word weights, so that what one model teaches about a word
    /// carries over to the other models; the crosses keep only each model's departures.
    public var modelCrossScale: Float = 1
    /// Adds the prompt's shape (`PromptShape`): its first word, question marks, lines, code
    /// symbols and a requested count ("3 sentences"), alone and the code level crossed with the
    /// model. Off by default: on CASTILLO's training split it made held-out sources and
    /// (model, source) cells worse (`kvcache predict validate`; figures in the README).
    public var promptShape: Bool = false

    public init(hashBits: Int = 18, leadingTokens: Int = 64, trailingTokens: Int = 48, bigrams: Bool = true,
                modelCrosses: Bool = true, modelCrossScale: Float = 1, promptShape: Bool = false) {
        self.hashBits = hashBits
        self.leadingTokens = leadingTokens
        self.trailingTokens = trailingTokens
        self.bigrams = bigrams
        self.modelCrosses = modelCrosses
        self.modelCrossScale = modelCrossScale
        self.promptShape = promptShape
    }

    /// Whether the values are usable (bits in 8...24, token windows in 0...65_536, cross scale in (0, 16]).
    public var isValid: Bool {
        (8...24).contains(hashBits) && (0...65_536).contains(leadingTokens) && (0...65_536).contains(trailingTokens)
            && modelCrossScale > 0 && modelCrossScale <= 16
    }

    /// The most features one input can produce.
    public var maxFeatures: Int { (leadingTokens + trailingTokens) * 3 + 24 }
}

/// A sparse feature vector, reused across calls so that extraction allocates nothing.
public final class FeatureVector {
    /// Number of valid entries in `indices` / `values`.
    public internal(set) var count = 0
    /// Feature slots, `0 ..< 1 << hashBits`.
    public internal(set) var indices: [Int32]
    /// Feature values, parallel to `indices`.
    public internal(set) var values: [Float]
    var trailing: [UInt64]

    public init(config: FeatureHashingConfig) {
        indices = [Int32](repeating: 0, count: config.maxFeatures)
        values = [Float](repeating: 0, count: config.maxFeatures)
        trailing = [UInt64](repeating: 0, count: max(1, config.trailingTokens))
    }
}

/// Turns a `PredictionInput` into hashed features:
/// - word unigrams and bigrams of the prompt text (ASCII lowercased; letters, digits, `_` and
///   non-ASCII bytes form words; each other symbol and each newline is a token of its own), from the
///   first `leadingTokens` and the last `trailingTokens` tokens, each valued `1/sqrt(n)` for `n` unigrams;
/// - (model x word) crosses when enabled;
/// - value-1 indicators: a bias, the log2 bin of the prompt length in tokens, the log2 bin of the
///   number of text tokens, the model id, (model x prompt-length bin), the template key;
/// - the prompt's shape when enabled (`PromptShape`, value 1, at most 6);
/// - `log(1 + promptTokens) / 10` as one continuous feature.
/// The hashes are FNV-1a + SplitMix64, stable across processes and platforms.
public struct FeatureHasher: Sendable {
    public let config: FeatureHashingConfig
    private let shift: UInt64

    public init(config: FeatureHashingConfig) {
        self.config = config
        shift = UInt64(64 - config.hashBits)
    }

    // Namespace salts so that a word, a bigram and a cross never share a slot by construction.
    private static let unigramSalt: UInt64 = 0x1111_1111_1111_1111
    private static let bigramSalt: UInt64 = 0x2222_2222_2222_2222
    private static let crossSalt: UInt64 = 0x3333_3333_3333_3333
    private static let metaSalt: UInt64 = 0x4444_4444_4444_4444
    private static let shapeSalt: UInt64 = 0x5555_5555_5555_5555

    /// Writes the features of `input` into `vector`, replacing its contents.
    ///
    /// - Complexity: O(n) in the prompt's UTF-8 length; allocates nothing (the prompt string is read
    ///   in place when it is stored contiguously, as native Swift strings are).
    public func extract(_ input: PredictionInput, into vector: FeatureVector) {
        let modelHash: UInt64? = input.modelID.map { StableHash.fnv1a($0) }
        let count = vector.indices.withUnsafeMutableBufferPointer { idx in
            vector.values.withUnsafeMutableBufferPointer { val in
                vector.trailing.withUnsafeMutableBufferPointer { ring in
                    var sink = FeatureSink(indices: idx.baseAddress!, values: val.baseAddress!,
                                           ring: ring.baseAddress!, shift: shift)
                    var shape = PromptShape()
                    if var text = input.promptText {
                        text.withUTF8 { bytes in hashText(bytes, modelHash: modelHash, into: &sink, shape: &shape) }
                    }
                    let lengthBin = UInt64(log2Bin(input.promptTokens))
                    let meta = Self.metaSalt
                    sink.emit(StableHash.mix(1) ^ meta, value: 1)                                   // bias
                    sink.emit(StableHash.combine(2, lengthBin) ^ meta, value: 1)                     // prompt length bin
                    sink.emit(StableHash.combine(3, UInt64(log2Bin(shape.tokens))) ^ meta, value: 1) // text length bin
                    sink.emit(StableHash.mix(4) ^ meta, value: Float(log1p(Double(max(0, input.promptTokens))) / 10))
                    if let modelHash {
                        sink.emit(StableHash.combine(5, modelHash) ^ meta, value: 1)
                        sink.emit(StableHash.combine(StableHash.combine(6, modelHash), lengthBin) ^ meta, value: 1)
                    }
                    if let template = input.templateKey {
                        sink.emit(StableHash.combine(7, template) ^ meta, value: 1)
                    }
                    if config.promptShape && input.promptText != nil {
                        emitShape(shape, modelHash: modelHash, into: &sink)
                    }
                    return sink.count
                }
            }
        }
        vector.count = count
    }

    /// The shape of `text` as `extract` notes it (for tests and tools; allocates a scratch vector).
    /// O(n) in the text's UTF-8 length.
    func shape(of text: String) -> PromptShape {
        let vector = FeatureVector(config: config)
        var shape = PromptShape()
        var text = text
        vector.indices.withUnsafeMutableBufferPointer { idx in
            vector.values.withUnsafeMutableBufferPointer { val in
                vector.trailing.withUnsafeMutableBufferPointer { ring in
                    var sink = FeatureSink(indices: idx.baseAddress!, values: val.baseAddress!,
                                           ring: ring.baseAddress!, shift: shift)
                    text.withUTF8 { hashText($0, modelHash: nil, into: &sink, shape: &shape) }
                }
            }
        }
        return shape
    }

    /// The slot of a hash. O(1).
    @inline(__always) func slot(_ h: UInt64) -> Int32 {
        Int32(truncatingIfNeeded: StableHash.mix(h) >> shift)
    }

    /// The prompt-shape indicators: first word, log2 bins of question marks, lines and code
    /// symbols, the requested (unit, log2 count) and (model x code-symbol bin). At most 6. O(1).
    @inline(__always) private func emitShape(_ shape: PromptShape, modelHash: UInt64?, into sink: inout FeatureSink) {
        let meta = Self.shapeSalt
        let codeBin = UInt64(log2Bin(shape.codeSymbols))
        if shape.firstWord != 0 { sink.emit(StableHash.combine(8, shape.firstWord) ^ meta, value: 1) }
        sink.emit(StableHash.combine(9, UInt64(log2Bin(shape.questionMarks))) ^ meta, value: 1)
        sink.emit(StableHash.combine(10, UInt64(log2Bin(shape.lines))) ^ meta, value: 1)
        sink.emit(StableHash.combine(11, codeBin) ^ meta, value: 1)
        if shape.requestedCount >= 0 {
            let request = StableHash.combine(shape.requestedUnit, UInt64(log2Bin(shape.requestedCount)))
            sink.emit(StableHash.combine(12, request) ^ meta, value: 1)
        }
        if let modelHash {
            sink.emit(StableHash.combine(StableHash.combine(13, modelHash), codeBin) ^ meta, value: 1)
        }
    }

    /// Writes features through raw pointers lent by `extract`; never escapes it.
    struct FeatureSink {
        let indices: UnsafeMutablePointer<Int32>
        let values: UnsafeMutablePointer<Float>
        let ring: UnsafeMutablePointer<UInt64>
        let shift: UInt64
        var count = 0

        /// Capacity is `maxFeatures`, which bounds what one input can emit. O(1).
        @inline(__always) mutating func emit(_ h: UInt64, value: Float) {
            indices[count] = Int32(truncatingIfNeeded: StableHash.mix(h) >> shift)
            values[count] = value
            count += 1
        }
    }

    /// Hashes the text's tokens and notes its shape (with the number of tokens) in `shape`.
    private func hashText(_ bytes: UnsafeBufferPointer<UInt8>, modelHash: UInt64?, into v: inout FeatureSink,
                          shape: inout PromptShape) {
        let leading = config.leadingTokens
        let trailingCapacity = config.trailingTokens
        let crosses = config.modelCrosses && modelHash != nil
        let crossValue = config.modelCrossScale
        let model = modelHash ?? 0
        var tokens = 0
        var unigrams = 0
        var previous: UInt64 = 0
        var word = StableHash.fnvOffset
        var inWord = false
        var number = 0            // the word's value while it is all digits, else -1
        var ringHead = 0          // next ring slot to write: no division per token

        func token(_ h: UInt64) {
            if tokens < leading {
                v.emit(h ^ Self.unigramSalt, value: 1)
                unigrams += 1
                if crosses { v.emit(StableHash.combine(model, h) ^ Self.crossSalt, value: crossValue) }
                if config.bigrams && tokens > 0 { v.emit(StableHash.combine(previous, h) ^ Self.bigramSalt, value: 1) }
                previous = h
            } else if trailingCapacity > 0 {
                v.ring[ringHead] = h
                ringHead += 1
                if ringHead == trailingCapacity { ringHead = 0 }
            }
            tokens += 1
        }

        // Only the first `leading` tokens and the last `tailBytes` bytes are read, so the cost is
        // bounded however long the prompt is; the skipped middle is estimated at 5 bytes a token.
        let tailBytes = trailingCapacity * 8
        var skipped = 0
        var i = 0
        let n = bytes.count
        while i < n {
            let b = bytes[i]
            let isWordByte = b >= 0x80 || (b >= 0x30 && b <= 0x39) || (b | 0x20 >= 0x61 && b | 0x20 <= 0x7a) || b == 0x5f
            if isWordByte {
                let lower = (b >= 0x41 && b <= 0x5a) ? b | 0x20 : b
                word = (word ^ UInt64(lower)) &* StableHash.fnvPrime
                inWord = true
                if number >= 0 { number = b >= 0x30 && b <= 0x39 ? min(1_000_000, number * 10 + Int(b - 0x30)) : -1 }
            } else {
                if inWord {
                    token(word)
                    shape.word(word, number: number)
                    word = StableHash.fnvOffset
                    inWord = false
                    number = 0
                }
                if b != 0x20 && b != 0x09 && b != 0x0d {
                    token(StableHash.mix(0x5000 | UInt64(b)))
                    shape.symbol(b)
                }
                if tokens >= leading && skipped == 0 && n - tailBytes > i + 1 {
                    // Jump to the tail, then on to the next token boundary.
                    var j = n - tailBytes
                    while j < n && bytes[j] != 0x20 && bytes[j] != 0x0a { j += 1 }
                    skipped = max(1, j - i - 1)
                    i = j
                    continue
                }
            }
            i += 1
        }
        if inWord {
            token(word)
            shape.word(word, number: number)
        }

        // The tail of a long prompt, in order; bigrams only within the tail.
        let read = tokens
        if read > leading && trailingCapacity > 0 {
            let stored = min(read - leading, trailingCapacity)
            // The oldest stored token sits `stored` slots behind the write head.
            var position = ringHead - stored
            if position < 0 { position += trailingCapacity }
            for i in 0..<stored {
                let h = v.ring[position]
                position += 1
                if position == trailingCapacity { position = 0 }
                v.emit(h ^ Self.unigramSalt, value: 1)
                unigrams += 1
                if crosses { v.emit(StableHash.combine(model, h) ^ Self.crossSalt, value: crossValue) }
                if config.bigrams && i > 0 { v.emit(StableHash.combine(previous, h) ^ Self.bigramSalt, value: 1) }
                previous = h
            }
        }
        if unigrams > 0 {
            let scale = 1 / Float(unigrams).squareRoot()
            for i in 0..<v.count { v.values[i] *= scale }
        }
        shape.tokens = tokens + skipped / 5
    }

    /// floor(log2(n + 1)), clamped to 0...31. O(1).
    @inline(__always) func log2Bin(_ n: Int) -> Int {
        let x = UInt64(clamping: max(0, n)) &+ 1
        return min(31, 63 - x.leadingZeroBitCount)
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
