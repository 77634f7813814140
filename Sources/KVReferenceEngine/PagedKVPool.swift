import KVCache
import KVPlan

/// The KV pool: a buffer of fixed-size blocks indexed by `BlockID`, where one block holds K and V of
/// `blockTokens` consecutive tokens for every layer as one contiguous unit (the unit tiers move).
///
/// Block layout, fp32, innermost last: `[layer][K | V][token in block][kv head][head dim]`.
/// So for one layer the K of a block is a row-major `blockTokens x (kvHeads * headDim)` matrix, which
/// attention reads with a row stride of `kvHeads * headDim`. Block size for SmolLM2-135M at 16 tokens:
/// 30 x 2 x 16 x 3 x 64 x 4 B = 737,280 B. fp32 (not fp16) so attention runs in BLAS straight from the
/// pool without conversion; `kv-dump` converts to fp16 when asked. `geometry` says all of this as the
/// tiers read it (`KVGeometry` with `.fp32`, the same layer-major block layout).
///
/// A block's contents are meaningful only for the token slots the engine has written.
public final class PagedKVPool: @unchecked Sendable {
    // Sendable: `storage` is fixed for the pool's life; the engine's single thread writes a block only
    // while no tier copy touches it (see `PagedKVPoolMemory`), and decode workers read distinct ranges.
    /// The block's shape: layers, KV heads, head dimension, `.fp32`, tokens per block.
    public let geometry: KVGeometry
    public let capacityBlocks: Int
    /// Floats in one block.
    public let floatsPerBlock: Int
    private let storage: UnsafeMutablePointer<Float>

    /// Allocates `capacityBlocks` zeroed blocks of `geometry` (whose dtype must be `.fp32`). O(capacity).
    public init(geometry: KVGeometry, capacityBlocks: Int) {
        precondition(geometry.dtype == .fp32 && capacityBlocks > 0, "an fp32 pool of at least one block")
        self.geometry = geometry
        self.capacityBlocks = capacityBlocks
        floatsPerBlock = geometry.bytesPerBlock / MemoryLayout<Float>.stride
        storage = .allocate(capacity: floatsPerBlock * capacityBlocks)
        storage.initialize(repeating: 0, count: floatsPerBlock * capacityBlocks)
    }

    /// A pool of fp32 blocks; traps on a non-positive count or a block of 1 GiB or more.
    public convenience init(layers: Int, kvHeads: Int, headDim: Int, blockTokens: Int, capacityBlocks: Int) {
        let geometry: KVGeometry
        do {
            geometry = try KVGeometry(layers: layers, kvHeads: kvHeads, headDim: headDim, dtype: .fp32, blockTokens: blockTokens)
        } catch { preconditionFailure("\(error)") }
        self.init(geometry: geometry, capacityBlocks: capacityBlocks)
    }

    @inlinable public var layers: Int { geometry.layers }
    @inlinable public var kvHeads: Int { geometry.kvHeads }
    @inlinable public var headDim: Int { geometry.headDim }
    @inlinable public var blockTokens: Int { geometry.blockTokens }

    public convenience init(config: LlamaConfig, blockTokens: Int, capacityBlocks: Int) {
        self.init(layers: config.layers, kvHeads: config.kvHeads, headDim: config.headDim,
                  blockTokens: blockTokens, capacityBlocks: capacityBlocks)
    }

    deinit { storage.deallocate() }

    /// Bytes in one block.
    public var bytesPerBlock: Int { geometry.bytesPerBlock }

    /// Whether `block` is a valid index.
    @inline(__always)
    public func contains(_ block: BlockID) -> Bool { block >= 0 && Int(block) < capacityBlocks }

    /// First float of layer `layer`'s K (`value == false`) or V of `block`:
    /// a `blockTokens x (kvHeads * headDim)` row-major matrix. - Precondition: valid indices.
    @inline(__always)
    func pointer(block: BlockID, layer: Int, value: Bool) -> UnsafeMutablePointer<Float> {
        storage + Int(block) * floatsPerBlock + (layer * 2 + (value ? 1 : 0)) * blockTokens * kvHeads * headDim
    }

    /// Copies one block onto another (copy-on-write of a shared partial block). O(block size).
    public func copyBlock(from src: BlockID, to dst: BlockID) {
        precondition(contains(src) && contains(dst), "block id out of range")
        guard src != dst else { return }
        (storage + Int(dst) * floatsPerBlock).update(from: storage + Int(src) * floatsPerBlock, count: floatsPerBlock)
    }

    /// Lends the bytes of `block` to `body`; the pointer must not escape.
    public func withBlockBytes<R, E: Error>(_ block: BlockID,
                                            _ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        precondition(contains(block), "block id out of range")
        return try body(UnsafeRawBufferPointer(start: storage + Int(block) * floatsPerBlock, count: bytesPerBlock))
    }

    /// Lends the bytes of `block` for writing (loading a block back from a lower tier).
    public func withMutableBlockBytes<R, E: Error>(_ block: BlockID,
                                                   _ body: (UnsafeMutableRawBufferPointer) throws(E) -> R) throws(E) -> R {
        precondition(contains(block), "block id out of range")
        return try body(UnsafeMutableRawBufferPointer(start: storage + Int(block) * floatsPerBlock, count: bytesPerBlock))
    }
}
