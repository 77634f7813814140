/// A hybrid attention + SSM model as a prefix cache sees it: the KV bytes one cached token costs, the
/// bytes of one SSM-state checkpoint (all SSM layers' recurrent and convolution states after a token),
/// and the FLOPs a prefix hit saves, per layer type.
///
/// Every figure is an exact `Int64` integer formula (no floating point); for the paper's 7B hybrid
/// they are the README's: 65,536 B of KV per token, 1,116,160 B of SSM state per layer and
/// 26,787,840 B per checkpoint, and over `l` tokens attention `8·l·d² + 4·l²·d`, MLP `16·l·d²`, Mamba
/// `12·l·d² + 16·l·d·n + 10·l·d`. The general forms, which reduce to those:
/// - attention: `2·l·d·(2·d + 2·kvDim) + 4·l²·d` (Q and O projections of width d, K and V of width
///   kvDim, scores and context over the causal window counted as in the paper);
/// - MLP: `2·matrices·l·d·intermediate` (per dense-equivalent MLP layer);
/// - Mamba: `6·E·l·d² + 8·E·l·d·n + 5·E·l·d` with expansion E (in and out projections, scan, gating).
/// Values are immutable; every query is O(1), allocates nothing and cannot fail for lengths up to
/// about 10⁶ tokens (results fit in Int64 for the presets).
public struct HybridModel: Sendable, Equatable {
    /// Preset name (`hybrid-7b`, `jamba-1.5-mini`, `nemotron-h-8b`).
    public var name: String
    public var attentionLayers: Int64
    public var mambaLayers: Int64
    /// Dense-equivalent MLP layers (a mixture-of-experts layer with top-k routing counts k times).
    public var mlpLayers: Int64
    /// Model width d.
    public var dModel: Int64
    /// SSM state size n.
    public var dState: Int64
    /// Mamba expansion E (inner width E·d).
    public var expand: Int64
    /// Width of K (and of V) per token per attention layer: kv heads x head dim.
    public var kvDim: Int64
    /// MLP intermediate width and weight matrices per MLP (2 for a plain MLP, 3 for SwiGLU).
    public var mlpIntermediate: Int64
    public var mlpMatrices: Int64
    /// Elements of the recurrent SSM state per layer, and of the convolution state per layer.
    public var ssmStateElements: Int64
    public var convStateElements: Int64
    /// Bytes per element of KV and of the SSM state (2: fp16/bf16).
    public var bytesPerElement: Int64

    public init(name: String, attentionLayers: Int64, mambaLayers: Int64, mlpLayers: Int64, dModel: Int64,
                dState: Int64, expand: Int64, kvDim: Int64, mlpIntermediate: Int64, mlpMatrices: Int64,
                ssmStateElements: Int64, convStateElements: Int64, bytesPerElement: Int64 = 2) {
        self.name = name
        self.attentionLayers = attentionLayers
        self.mambaLayers = mambaLayers
        self.mlpLayers = mlpLayers
        self.dModel = dModel
        self.dState = dState
        self.expand = expand
        self.kvDim = kvDim
        self.mlpIntermediate = mlpIntermediate
        self.mlpMatrices = mlpMatrices
        self.ssmStateElements = ssmStateElements
        self.convStateElements = convStateElements
        self.bytesPerElement = bytesPerElement
    }

    /// KV bytes of one token over all attention layers (K and V).
    @inlinable public var kvBytesPerToken: Int64 { attentionLayers * 2 * kvDim * bytesPerElement }
    /// SSM state bytes of one layer (recurrent + convolution state).
    @inlinable public var checkpointBytesPerLayer: Int64 { (ssmStateElements + convStateElements) * bytesPerElement }
    /// Bytes of one checkpoint: every SSM layer's state after one token.
    @inlinable public var checkpointBytes: Int64 { mambaLayers * checkpointBytesPerLayer }

    /// FLOPs of one attention layer over `l` tokens (a prefill from position 0).
    @inlinable public func attentionFLOPs(_ l: Int64) -> Int64 {
        2 * l * dModel * (2 * dModel + 2 * kvDim) + 4 * l * l * dModel
    }
    /// FLOPs of one dense-equivalent MLP layer over `l` tokens.
    @inlinable public func mlpFLOPs(_ l: Int64) -> Int64 { 2 * mlpMatrices * l * dModel * mlpIntermediate }
    /// FLOPs of one Mamba layer over `l` tokens.
    @inlinable public func mambaFLOPs(_ l: Int64) -> Int64 {
        6 * expand * l * dModel * dModel + 8 * expand * l * dModel * dState + 5 * expand * l * dModel
    }

    /// FLOPs a hit of `s` tokens saves, by layer type (all layers of each type).
    @inlinable public func savedFLOPs(hitTokens s: Int64) -> FLOPs {
        FLOPs(attention: attentionLayers * attentionFLOPs(s), mlp: mlpLayers * mlpFLOPs(s),
              mamba: mambaLayers * mambaFLOPs(s))
    }

    /// FLOPs by layer type; `total` is their sum.
    public struct FLOPs: Sendable, Equatable {
        public var attention: Int64
        public var mlp: Int64
        public var mamba: Int64
        @inlinable public var total: Int64 { attention + mlp + mamba }
        @inlinable public init(attention: Int64 = 0, mlp: Int64 = 0, mamba: Int64 = 0) {
            self.attention = attention
            self.mlp = mlp
            self.mamba = mamba
        }
        @inlinable public static func += (a: inout FLOPs, b: FLOPs) {
            a.attention += b.attention
            a.mlp += b.mlp
            a.mamba += b.mamba
        }
    }
}

extension HybridModel {
    /// The 7B Attention-Mamba2 hybrid of the Marconi paper (MLSys'25): 24 SSM, 4 attention, 28 MLP
    /// layers, d = 4096, n = 128, conv kernel 4, expand 2, fp16, no grouped-query attention. Its
    /// checkpoint counts the state as the paper does: `d·n` recurrent elements and `(2d + 2n)·4`
    /// convolution elements per layer (1,116,160 B with fp16).
    public static let hybrid7B = HybridModel(
        name: "hybrid-7b", attentionLayers: 4, mambaLayers: 24, mlpLayers: 28, dModel: 4096, dState: 128, expand: 2,
        kvDim: 4096, mlpIntermediate: 4 * 4096, mlpMatrices: 2,
        ssmStateElements: 4096 * 128, convStateElements: (2 * 4096 + 2 * 128) * 4)

    /// AI21 Jamba-1.5-Mini, from its published `config.json` (ai21labs/AI21-Jamba-1.5-Mini): 32 layers,
    /// attention every 8th (offset 4): 4 attention and 28 Mamba-1 layers; hidden 4096, 32 heads with 8
    /// KV heads of 128 (kvDim 1024); mamba_d_state 16, mamba_d_conv 4, mamba_expand 2; SwiGLU MLP of
    /// 14,336 in every layer, a 16-expert top-2 MoE every other layer (16 dense + 16 x 2 = 48
    /// dense-equivalent MLP layers). Mamba-1 state: inner width 8192 x n 16 recurrent elements and
    /// 8192 x 4 convolution elements per layer.
    public static let jamba15Mini = HybridModel(
        name: "jamba-1.5-mini", attentionLayers: 4, mambaLayers: 28, mlpLayers: 48, dModel: 4096, dState: 16,
        expand: 2, kvDim: 1024, mlpIntermediate: 14336, mlpMatrices: 3,
        ssmStateElements: 8192 * 16, convStateElements: 8192 * 4)

    /// NVIDIA Nemotron-H-8B, from its published `config.json` (nvidia/Nemotron-H-8B-Base-8K): 52 layers
    /// in the pattern of 24 Mamba-2, 4 attention and 24 MLP layers; hidden 4096, 32 heads with 8 KV
    /// heads of 128 (kvDim 1024); Mamba-2 with 128 heads of 64 (inner 8192, expand 2), 8 groups,
    /// ssm_state_size 128, conv kernel 4; squared-ReLU MLP (2 matrices) of 21,504. Mamba-2 state:
    /// 8192 x 128 recurrent and (8192 + 2·8·128) x 4 convolution elements per layer.
    public static let nemotronH8B = HybridModel(
        name: "nemotron-h-8b", attentionLayers: 4, mambaLayers: 24, mlpLayers: 24, dModel: 4096, dState: 128,
        expand: 2, kvDim: 1024, mlpIntermediate: 21504, mlpMatrices: 2,
        ssmStateElements: 8192 * 128, convStateElements: (8192 + 2 * 8 * 128) * 4)

    /// Every preset, the paper's model first.
    public static let presets: [HybridModel] = [hybrid7B, jamba15Mini, nemotronH8B]

    /// The preset named `name`, or nil.
    public static func preset(named name: String) -> HybridModel? { presets.first { $0.name == name.lowercased() } }
}
