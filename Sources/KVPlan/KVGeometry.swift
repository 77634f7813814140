import KVCache

/// The element type of the engine's KV cache.
public enum KVDType: String, Sendable, CaseIterable, Codable {
    case fp32, fp16, bf16, fp8

    /// Bytes per element.
    @inlinable
    public var size: Int {
        switch self {
        case .fp32: return 4
        case .fp16, .bf16: return 2
        case .fp8: return 1
        }
    }
}

/// Describes the engine's KV for one block: how many layers, KV heads, head dimension, element type and
/// tokens per block.
///
/// A block is one contiguous unit across layers (`bytesPerBlock`), laid out layer-major:
/// `[layer][K, V][token][kvHead][headDim]`. One layer's K and V for a block are therefore one contiguous
/// range (`bytesPerLayer`), so a group of consecutive layers is one contiguous range too: transfers move
/// whole layer groups, and an engine can start computing layer i while layer i+1 is still in flight.
public struct KVGeometry: Hashable, Sendable {
    public var layers: Int
    public var kvHeads: Int
    public var headDim: Int
    public var dtype: KVDType
    public var blockTokens: Int

    /// Creates a layout; every count must be positive and a block must stay below 1 GiB.
    public init(layers: Int, kvHeads: Int, headDim: Int, dtype: KVDType, blockTokens: Int) throws(KVCacheError) {
        guard layers > 0, kvHeads > 0, headDim > 0, blockTokens > 0 else {
            throw .invalidArgument("layout counts must be positive")
        }
        let (perLayer, o1) = (2 * kvHeads * headDim * blockTokens).multipliedReportingOverflow(by: dtype.size)
        let (total, o2) = perLayer.multipliedReportingOverflow(by: layers)
        guard !o1, !o2, total < 1 << 30 else { throw .invalidArgument("a block must be smaller than 1 GiB") }
        self.layers = layers; self.kvHeads = kvHeads; self.headDim = headDim
        self.dtype = dtype; self.blockTokens = blockTokens
    }

    /// Llama-3-8B (32 layers, 8 KV heads, head dim 128) with 16-token blocks: 2 MiB per fp16 block.
    public static func llama3_8B(dtype: KVDType = .fp16, blockTokens: Int = 16) -> KVGeometry {
        // Constants are valid by construction.
        try! KVGeometry(layers: 32, kvHeads: 8, headDim: 128, dtype: dtype, blockTokens: blockTokens)
    }

    /// Bytes of K and V for one token in one layer.
    @inlinable public var bytesPerTokenPerLayer: Int { 2 * kvHeads * headDim * dtype.size }
    /// Bytes of one layer's K and V for one block (a contiguous range of the block).
    @inlinable public var bytesPerLayer: Int { bytesPerTokenPerLayer * blockTokens }
    /// Bytes of one whole block across all layers.
    @inlinable public var bytesPerBlock: Int { bytesPerLayer * layers }
    /// Bytes of KV per token across all layers.
    @inlinable public var bytesPerToken: Int { bytesPerTokenPerLayer * layers }

    /// The byte range of layers `layers` within a block.
    @inlinable
    public func byteRange(layers r: Range<Int>) -> Range<Int> {
        r.lowerBound * bytesPerLayer ..< r.upperBound * bytesPerLayer
    }

    /// Splits the layers into `groups` consecutive groups of near-equal size (at least one layer each).
    public func layerGroups(_ groups: Int) -> [Range<Int>] {
        let g = max(1, min(groups, layers))
        return (0 ..< g).map { i in (i * layers / g) ..< ((i + 1) * layers / g) }
    }
}
