import KVCache
import KVPlan

/// The shape of a transformer (or attention/Mamba hybrid) that the cost model needs: parameter
/// counts, layer geometry and tensor parallelism. KV bytes per token follow from it.
///
/// All sizes are for the whole model; `tensorParallel` GPUs split weights, KV and FLOPs evenly.
public struct ModelSpec: Sendable, Equatable {
    /// Preset name as used on the command line (`llama3-8b`, ...).
    public var name: String
    /// Parameters read per step (every expert for a mixture-of-experts model: a large batch touches all).
    public var totalParameters: Double
    /// Parameters one token flows through (equals `totalParameters` for dense models).
    public var activeParameters: Double
    /// Decoder layers in all.
    public var layers: Int
    /// Layers with attention (and so with a KV cache); the rest are Mamba layers with a fixed state.
    public var attentionLayers: Int
    /// Query heads per attention layer.
    public var queryHeads: Int
    /// Key/value heads per attention layer (grouped-query attention).
    public var kvHeads: Int
    /// Dimension of one head.
    public var headDim: Int
    /// Bytes per weight and per KV element (2 for bf16).
    public var bytesPerElement: Int
    /// Recurrent state bytes per sequence over all Mamba layers (0 for pure transformers).
    public var stateBytesPerSequence: Double
    /// GPUs the model is split over (tensor parallel degree).
    public var tensorParallel: Int

    public init(name: String, totalParameters: Double, activeParameters: Double? = nil, layers: Int,
                attentionLayers: Int? = nil, queryHeads: Int, kvHeads: Int, headDim: Int,
                bytesPerElement: Int = 2, stateBytesPerSequence: Double = 0, tensorParallel: Int = 1) {
        self.name = name
        self.totalParameters = totalParameters
        self.activeParameters = activeParameters ?? totalParameters
        self.layers = layers
        self.attentionLayers = attentionLayers ?? layers
        self.queryHeads = queryHeads
        self.kvHeads = kvHeads
        self.headDim = headDim
        self.bytesPerElement = bytesPerElement
        self.stateBytesPerSequence = stateBytesPerSequence
        self.tensorParallel = tensorParallel
    }

    /// The KV cache's geometry over all GPUs, with `blockTokens` tokens per block: the attention layers'
    /// K and V, in the element type of `bytesPerElement` (4: fp32, 2: bf16, 1: fp8).
    /// - Throws: `.invalidArgument` for a block of 1 GiB or more, or counts that are not positive.
    public func kvGeometry(blockTokens: Int) throws(KVCacheError) -> KVGeometry {
        let dtype: KVDType = bytesPerElement >= 4 ? .fp32 : bytesPerElement == 1 ? .fp8 : .bf16
        return try KVGeometry(layers: attentionLayers, kvHeads: kvHeads, headDim: headDim, dtype: dtype, blockTokens: blockTokens)
    }

    /// KV-cache bytes one token occupies over all GPUs: K and V, for every attention layer
    /// (`kvGeometry`'s bytes per token).
    public var kvBytesPerToken: Int {
        // One token of any preset is far below 1 GiB; a spec whose token is not traps.
        do { return try kvGeometry(blockTokens: 1).bytesPerToken } catch { preconditionFailure("\(error)") }
    }

    /// Width of the attention output (query heads x head dim), the `d` of the attention FLOP term.
    public var attentionWidth: Int { queryHeads * headDim }

    /// Weight bytes over all GPUs.
    public var weightBytes: Double { totalParameters * Double(bytesPerElement) }

    /// Hidden size used for tensor-parallel all-reduce volume (query heads x head dim for these models).
    public var hiddenSize: Int { attentionWidth }
}

extension ModelSpec {
    /// Meta Llama-3-8B: 32 layers, 32 query / 8 KV heads of 128 (128 KiB of KV per token in bf16).
    public static let llama3_8B = ModelSpec(name: "llama3-8b", totalParameters: 8.03e9, layers: 32,
                                            queryHeads: 32, kvHeads: 8, headDim: 128)
    /// Meta Llama-3-70B on 4 GPUs: 80 layers, 64 query / 8 KV heads (320 KiB of KV per token).
    public static let llama3_70B_TP4 = ModelSpec(name: "llama3-70b-tp4", totalParameters: 70.6e9, layers: 80,
                                                 queryHeads: 64, kvHeads: 8, headDim: 128, tensorParallel: 4)
    /// Meta Llama-3-70B on 8 GPUs.
    public static let llama3_70B_TP8 = ModelSpec(name: "llama3-70b-tp8", totalParameters: 70.6e9, layers: 80,
                                                 queryHeads: 64, kvHeads: 8, headDim: 128, tensorParallel: 8)
    /// Qwen2.5-7B: 28 layers, 28 query / 4 KV heads of 128 (56 KiB of KV per token).
    public static let qwen25_7B = ModelSpec(name: "qwen2.5-7b", totalParameters: 7.62e9, layers: 28,
                                            queryHeads: 28, kvHeads: 4, headDim: 128)
    /// Mistral-7B-v0.3: 32 layers, 32 query / 8 KV heads of 128.
    public static let mistral7B = ModelSpec(name: "mistral-7b", totalParameters: 7.25e9, layers: 32,
                                            queryHeads: 32, kvHeads: 8, headDim: 128)
    /// A Jamba-1.5-Mini-like hybrid: 32 layers of which 4 attention (1 in 8) and 28 Mamba, mixture of
    /// experts with 52 B parameters in all and 12 B active. Each Mamba layer keeps a fixed state per
    /// sequence: SSM state d_inner x d_state = 8192 x 16 plus the conv state 8192 x 4, in bf16
    /// (320 KiB per layer), whatever the context length.
    public static let jambaHybrid = ModelSpec(name: "jamba-hybrid", totalParameters: 52e9, activeParameters: 12e9,
                                              layers: 32, attentionLayers: 4, queryHeads: 32, kvHeads: 8,
                                              headDim: 128, stateBytesPerSequence: 28 * (8192 * 16 + 8192 * 4) * 2)

    /// Every preset, in the order `--model` lists them.
    public static let presets: [ModelSpec] = [llama3_8B, llama3_70B_TP4, llama3_70B_TP8, qwen25_7B, mistral7B, jambaHybrid]

    /// The preset named `name` (case-insensitive; `llama3-70b` means TP4), or nil.
    public static func preset(named name: String) -> ModelSpec? {
        let n = name.lowercased()
        if n == "llama3-70b" { return llama3_70B_TP4 }
        return presets.first { $0.name == n }
    }
}
