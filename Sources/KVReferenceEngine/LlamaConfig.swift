/// The hyperparameters of a llama-architecture model, read from GGUF metadata (`llama.*` keys).
///
/// Reading a file checks every value against `Limits` before anything is sized by it, so a crafted
/// header is a `GGUFError` naming the key, never an absurd allocation or a model that computes NaN.
public struct LlamaConfig: Sendable, Equatable {
    /// The documented bounds of each hyperparameter read from a file (far above any llama model
    /// this engine can run on a CPU, far below what would overflow a buffer size).
    public enum Limits {
        public static let layers = 1 ... 1024
        public static let embedding = 1 ... 65536
        public static let feedForward = 1 ... (1 << 20)
        public static let heads = 1 ... 1024
        public static let contextLength = 1 ... (1 << 24)
        public static let vocabSize = 1 ... (1 << 24)
        /// `rope.freq_base`: finite and positive, at most 1e12.
        public static let ropeBase: ClosedRange<Double> = .leastNonzeroMagnitude ... 1e12
        /// `attention.layer_norm_rms_epsilon`: finite and positive, below 1.
        public static let rmsEpsilon: ClosedRange<Double> = .leastNonzeroMagnitude ... 0.5
    }

    public var layers: Int
    public var embedding: Int
    public var feedForward: Int
    public var heads: Int
    public var kvHeads: Int
    public var headDim: Int
    public var ropeBase: Float
    public var ropeDims: Int
    public var rmsEpsilon: Float
    public var contextLength: Int
    public var vocabSize: Int

    /// Query heads that share one KV head (grouped-query attention).
    public var groupSize: Int { heads / kvHeads }
    /// Width of one token's K (or V) for one layer: `kvHeads * headDim`.
    public var kvWidth: Int { kvHeads * headDim }

    public init(layers: Int, embedding: Int, feedForward: Int, heads: Int, kvHeads: Int, headDim: Int,
                ropeBase: Float, ropeDims: Int, rmsEpsilon: Float, contextLength: Int, vocabSize: Int) {
        self.layers = layers; self.embedding = embedding; self.feedForward = feedForward
        self.heads = heads; self.kvHeads = kvHeads; self.headDim = headDim
        self.ropeBase = ropeBase; self.ropeDims = ropeDims; self.rmsEpsilon = rmsEpsilon
        self.contextLength = contextLength; self.vocabSize = vocabSize
    }

    /// Reads the configuration of a `general.architecture == "llama"` file.
    public init(gguf: GGUFFile) throws(GGUFError) {
        let md = gguf.metadata
        guard let arch = md["general.architecture"]?.stringValue else { throw .missing("general.architecture") }
        guard arch == "llama" else { throw .malformed("architecture \(arch) is not llama") }
        func int(_ key: String, _ range: ClosedRange<Int>, default value: Int? = nil) throws(GGUFError) -> Int {
            guard let entry = md["llama." + key] else {
                guard let value else { throw .missing("llama.\(key)") }
                return value
            }
            guard let v = entry.intValue else { throw .malformed("llama.\(key) is not a non-negative integer") }
            guard range.contains(v) else { throw .malformed("llama.\(key) \(v) is outside \(range)") }
            return v
        }
        func float(_ key: String, _ range: ClosedRange<Double>, default value: Double? = nil) throws(GGUFError) -> Float {
            guard let entry = md["llama." + key] else {
                guard let value else { throw .missing("llama.\(key)") }
                return Float(value)
            }
            guard let v = entry.doubleValue else { throw .malformed("llama.\(key) is not a number") }
            guard range.contains(v) else { throw .malformed("llama.\(key) \(v) is not a finite number in (0, \(range.upperBound)]") }
            return Float(v)
        }
        layers = try int("block_count", Limits.layers)
        embedding = try int("embedding_length", Limits.embedding)
        feedForward = try int("feed_forward_length", Limits.feedForward)
        heads = try int("attention.head_count", Limits.heads)
        kvHeads = try int("attention.head_count_kv", Limits.heads, default: heads)
        guard heads % kvHeads == 0, embedding % heads == 0 else {
            throw .malformed("\(heads) heads, \(kvHeads) KV heads and width \(embedding) do not divide")
        }
        headDim = embedding / heads
        ropeBase = try float("rope.freq_base", Limits.ropeBase, default: 10_000)
        ropeDims = try int("rope.dimension_count", 1 ... headDim, default: headDim)
        guard ropeDims % 2 == 0 else { throw .malformed("llama.rope.dimension_count \(ropeDims) is odd") }
        rmsEpsilon = try float("attention.layer_norm_rms_epsilon", Limits.rmsEpsilon)
        contextLength = try int("context_length", Limits.contextLength)
        if let tokens = md["tokenizer.ggml.tokens"]?.arrayValue, md["llama.vocab_size"] == nil {
            vocabSize = tokens.count
            guard Limits.vocabSize.contains(vocabSize) else { throw .malformed("vocabulary of \(vocabSize) tokens is outside \(Limits.vocabSize)") }
        } else {
            vocabSize = try int("vocab_size", Limits.vocabSize)
        }
    }
}
