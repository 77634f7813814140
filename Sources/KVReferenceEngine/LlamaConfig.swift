/// The hyperparameters of a llama-architecture model, read from GGUF metadata (`llama.*` keys).
public struct LlamaConfig: Sendable, Equatable {
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
        func int(_ key: String) throws(GGUFError) -> Int {
            guard let v = md["llama." + key]?.intValue, v > 0 else { throw .missing("llama.\(key)") }
            return v
        }
        func float(_ key: String) throws(GGUFError) -> Float {
            guard let v = md["llama." + key]?.doubleValue else { throw .missing("llama.\(key)") }
            return Float(v)
        }
        layers = try int("block_count")
        embedding = try int("embedding_length")
        feedForward = try int("feed_forward_length")
        heads = try int("attention.head_count")
        kvHeads = md["llama.attention.head_count_kv"]?.intValue ?? heads
        guard kvHeads > 0, heads % kvHeads == 0, embedding % heads == 0 else {
            throw .malformed("\(heads) heads, \(kvHeads) KV heads and width \(embedding) do not divide")
        }
        headDim = embedding / heads
        ropeBase = (md["llama.rope.freq_base"]?.doubleValue).map(Float.init) ?? 10_000
        ropeDims = md["llama.rope.dimension_count"]?.intValue ?? headDim
        guard ropeDims > 0, ropeDims <= headDim, ropeDims % 2 == 0 else { throw .malformed("rope dimension \(ropeDims)") }
        rmsEpsilon = try float("attention.layer_norm_rms_epsilon")
        contextLength = try int("context_length")
        if let v = md["llama.vocab_size"]?.intValue {
            vocabSize = v
        } else if let tokens = md["tokenizer.ggml.tokens"]?.arrayValue {
            vocabSize = tokens.count
        } else {
            throw .missing("llama.vocab_size")
        }
    }
}
