import KVCache
#if canImport(Glibc)
import Glibc
#endif

/// How an engine applies rotary position embeddings (RoPE) to the keys it caches: what a chunk store needs
/// to move cached keys to another position (PIE re-rotation) without the model.
///
/// Pair i of each head (the first `dims` dims of `headDim`) turns by `position x theta_i`, with
/// `theta_i = base^(-2i / dims)`; `layout` says which dims form the pair. Only plain RoPE is described:
/// no frequency scaling (linear, NTK, YaRN, Llama-3's rope_scaling) and no M-RoPE sections yet, so a
/// model that uses them must not re-rotate with this. A value type; `inverseFrequency` is O(1).
public struct RopeSpec: Hashable, Sendable, Codable {
    public enum Layout: String, Hashable, Sendable, Codable, CaseIterable {
        /// Pairs (2i, 2i+1): ggml's normal RoPE, the layout GGUF llama files are converted for.
        case adjacentPairs
        /// Pairs (i, i + dims/2): GPT-NeoX and Hugging Face's `rotate_half`.
        case halfSplit
    }

    /// The base of the frequencies (10000 for Llama 2 and SmolLM2, 500000 for Llama 3).
    public var base: Double
    /// Rotated dims per head: even, at most `headDim` and at most 1024 (partial rotary when < headDim).
    public var dims: Int
    /// Dims per head.
    public var headDim: Int
    public var layout: Layout

    /// Checks the shape: `base` > 1, `dims` even in 2...min(headDim, 1024).
    public init(base: Double, dims: Int, headDim: Int, layout: Layout) throws(KVCacheError) {
        guard base.isFinite, base > 1 else { throw .invalidArgument("RoPE base must be finite and above 1") }
        guard headDim > 0, dims >= 2, dims % 2 == 0, dims <= headDim, dims <= 1024 else {
            throw .invalidArgument("RoPE dims must be even, in 2...min(headDim, 1024)")
        }
        self.base = base; self.dims = dims; self.headDim = headDim; self.layout = layout
    }

    /// Rotated pairs per head.
    @inlinable public var pairs: Int { dims / 2 }

    /// theta_i = base^(-2i / dims), in Double as the reference engine computes it.
    @inlinable
    public func inverseFrequency(_ i: Int) -> Double { pow(base, -2 * Double(i) / Double(dims)) }
}
