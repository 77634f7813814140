/// The KV pool: a buffer of fixed-size blocks indexed by `BlockID`, where one block holds K and V of
/// `blockTokens` consecutive tokens for every layer as one contiguous unit (the unit tiers move).
///
/// Block layout, fp32, innermost last: `[layer][K | V][token in block][kv head][head dim]`.
/// So for one layer the K of a block is a row-major `blockTokens x (kvHeads * headDim)` matrix, which
/// attention reads with a row stride of `kvHeads * headDim`. Block size for SmolLM2-135M at 16 tokens:
/// 30 x 2 x 16 x 3 x 64 x 4 B = 737,280 B. fp32 (not fp16) so attention runs in BLAS straight from the
/// pool without conversion; `kv-dump` converts to fp16 when asked.
///
/// A block's contents are meaningful only for the token slots the engine has written.
public final class PagedKVPool: @unchecked Sendable {
    public let layers: Int
    public let kvHeads: Int
    public let headDim: Int
    public let blockTokens: Int
    public let capacityBlocks: Int
    /// Floats in one block.
    public let floatsPerBlock: Int
    private let storage: UnsafeMutablePointer<Float>

    /// Allocates `capacityBlocks` zeroed blocks. O(capacity).
    public init(layers: Int, kvHeads: Int, headDim: Int, blockTokens: Int, capacityBlocks: Int) {
        precondition(layers > 0 && kvHeads > 0 && headDim > 0 && blockTokens > 0 && capacityBlocks > 0)
        self.layers = layers; self.kvHeads = kvHeads; self.headDim = headDim
        self.blockTokens = blockTokens; self.capacityBlocks = capacityBlocks
        floatsPerBlock = layers * 2 * blockTokens * kvHeads * headDim
        storage = .allocate(capacity: floatsPerBlock * capacityBlocks)
        storage.initialize(repeating: 0, count: floatsPerBlock * capacityBlocks)
    }

    public convenience init(config: LlamaConfig, blockTokens: Int, capacityBlocks: Int) {
        self.init(layers: config.layers, kvHeads: config.kvHeads, headDim: config.headDim,
                  blockTokens: blockTokens, capacityBlocks: capacityBlocks)
    }

    deinit { storage.deallocate() }

    /// Bytes in one block.
    public var bytesPerBlock: Int { floatsPerBlock * MemoryLayout<Float>.stride }

    /// Whether `block` is a valid index.
    @inline(__always)
    public func contains(_ block: BlockIndex) -> Bool { block >= 0 && Int(block) < capacityBlocks }

    /// First float of layer `layer`'s K (`value == false`) or V of `block`:
    /// a `blockTokens x (kvHeads * headDim)` row-major matrix. - Precondition: valid indices.
    @inline(__always)
    func pointer(block: BlockIndex, layer: Int, value: Bool) -> UnsafeMutablePointer<Float> {
        storage + Int(block) * floatsPerBlock + (layer * 2 + (value ? 1 : 0)) * blockTokens * kvHeads * headDim
    }

    /// Copies one block onto another (copy-on-write of a shared partial block). O(block size).
    public func copyBlock(from src: BlockIndex, to dst: BlockIndex) {
        precondition(contains(src) && contains(dst), "block id out of range")
        guard src != dst else { return }
        (storage + Int(dst) * floatsPerBlock).update(from: storage + Int(src) * floatsPerBlock, count: floatsPerBlock)
    }

    /// Lends the bytes of `block` to `body`; the pointer must not escape.
    public func withBlockBytes<R, E: Error>(_ block: BlockIndex,
                                            _ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        precondition(contains(block), "block id out of range")
        return try body(UnsafeRawBufferPointer(start: storage + Int(block) * floatsPerBlock, count: bytesPerBlock))
    }

    /// Lends the bytes of `block` for writing (loading a block back from a lower tier).
    public func withMutableBlockBytes<R, E: Error>(_ block: BlockIndex,
                                                   _ body: (UnsafeMutableRawBufferPointer) throws(E) -> R) throws(E) -> R {
        precondition(contains(block), "block id out of range")
        return try body(UnsafeMutableRawBufferPointer(start: storage + Int(block) * floatsPerBlock, count: bytesPerBlock))
    }
}

/// Index of a block in the pool; the same integer type as the manager's `BlockID`.
public typealias BlockIndex = Int32
