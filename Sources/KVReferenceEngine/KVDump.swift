import Foundation

/// Writes a sequence's KV blocks from the pool to a directory: one file per block plus
/// `manifest.json` describing the layout, so that tier and codec benchmarks run on real KV.
///
/// Each file holds one block in the pool layout `[layer][K|V][token in block][kv head][head dim]`,
/// little-endian, in `dtype` (fp16 converted from the pool's fp32, or fp32 as stored). Slots past a
/// partial last block's `tokens` are written as zeros. O(blocks x block bytes).
public enum KVDump {
    public enum DType: String, Codable, Sendable, CaseIterable {
        case f16, f32
        public var bytes: Int { self == .f16 ? 2 : 4 }
    }

    /// The manifest written beside the block files.
    public struct Manifest: Codable, Sendable, Equatable {
        public struct Block: Codable, Sendable, Equatable {
            public var file: String
            /// Position of the block in the sequence.
            public var index: Int
            /// Tokens whose K/V the block holds (`blockTokens` except maybe the last).
            public var tokens: Int
        }
        public var format = "kvcache-kv-dump-v1"
        public var model: String
        public var dtype: DType
        public var layout = "[layer][K|V][token][kvHead][headDim]"
        public var layers: Int
        public var kvHeads: Int
        public var headDim: Int
        public var blockTokens: Int
        public var bytesPerBlock: Int
        public var promptTokens: Int
        public var blocks: [Block]
    }

    /// Writes `blockTable`'s first `ceil(tokens / blockTokens)` blocks and the manifest into `directory`
    /// (created if needed).
    /// - Returns: the manifest written.
    public static func write(pool: PagedKVPool, blockTable: [BlockIndex], tokens: Int, model: String,
                             dtype: DType, to directory: URL) throws -> Manifest {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let bt = pool.blockTokens
        let count = (tokens + bt - 1) / bt
        precondition(count <= blockTable.count, "block table shorter than the tokens")
        let floats = pool.floatsPerBlock
        let slotFloats = pool.kvHeads * pool.headDim
        var out = [UInt8](repeating: 0, count: floats * dtype.bytes)
        var blocks: [Manifest.Block] = []
        for i in 0 ..< count {
            let filled = min(bt, tokens - i * bt)
            pool.withBlockBytes(blockTable[i]) { raw in
                let src = raw.bindMemory(to: Float.self)
                out.withUnsafeMutableBytes { dst in
                    for j in 0 ..< floats {
                        // Slot index within its [layer][K|V] plane decides whether the slot is filled.
                        let slot = (j / slotFloats) % bt
                        let value = slot < filled ? src[j] : 0
                        switch dtype {
                        case .f16: dst.storeBytes(of: Float16(value).bitPattern.littleEndian, toByteOffset: 2 * j, as: UInt16.self)
                        case .f32: dst.storeBytes(of: value.bitPattern.littleEndian, toByteOffset: 4 * j, as: UInt32.self)
                        }
                    }
                }
            }
            let name = String(format: "block-%05d.bin", i)
            try Data(out).write(to: directory.appendingPathComponent(name))
            blocks.append(.init(file: name, index: i, tokens: filled))
        }
        let manifest = Manifest(model: model, dtype: dtype, layers: pool.layers, kvHeads: pool.kvHeads,
                                headDim: pool.headDim, blockTokens: bt, bytesPerBlock: floats * dtype.bytes,
                                promptTokens: tokens, blocks: blocks)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(manifest).write(to: directory.appendingPathComponent("manifest.json"))
        return manifest
    }
}
