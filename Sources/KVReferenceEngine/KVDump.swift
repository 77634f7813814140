import KVCache
import KVData
import Foundation

/// Writes a sequence's KV blocks from the pool to a directory: one file per block plus
/// `manifest.json` describing the layout, so that tier and codec benchmarks run on real KV.
///
/// Each file holds one block in the pool layout `[layer][K|V][token in block][kv head][head dim]`,
/// little-endian, in `dtype` (fp16 converted from the pool's fp32, or fp32 as stored). Slots past a
/// partial last block's `tokens` are written as zeros. Every file goes through `OutputFile` (KVData):
/// an existing link, device or folder of the same name is refused, never replaced. O(blocks x block bytes).
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
    /// (created if needed by `OutputFolder`; each file goes through `OutputFile`: temporary file, fsync,
    /// rename; a link, device, FIFO or folder in a file's place is refused, never replaced).
    /// - Throws: `DataError.cannotWrite` naming the folder or file, or `LoadError`.
    /// - Returns: the manifest written.
    public static func write(pool: PagedKVPool, blockTable: [BlockID], tokens: Int, model: String,
                             dtype: DType, to directory: URL) throws -> Manifest {
        try OutputFolder.create(directory.path)
        let bt = pool.blockTokens
        let count = (tokens + bt - 1) / bt
        guard tokens >= 1, count <= blockTable.count, blockTable.prefix(count).allSatisfy(pool.contains) else {
            throw LoadError.shapeMismatch("\(blockTable.count) blocks in the pool cannot hold \(tokens) tokens")
        }
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
            try OutputFile.write(out, to: directory.appendingPathComponent(name).path)
            blocks.append(.init(file: name, index: i, tokens: filled))
        }
        let manifest = Manifest(model: model, dtype: dtype, layers: pool.layers, kvHeads: pool.kvHeads,
                                headDim: pool.headDim, blockTokens: bt, bytesPerBlock: floats * dtype.bytes,
                                promptTokens: tokens, blocks: blocks)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try OutputFile.write(Array(encoder.encode(manifest)), to: directory.appendingPathComponent("manifest.json").path)
        return manifest
    }

    /// Why a dump could not be written or loaded.
    public enum LoadError: Error, Equatable, CustomStringConvertible {
        case shapeMismatch(String)
        case badBlockFile(String)
        case badManifest(String)
        public var description: String {
            switch self {
            case let .badManifest(why): "bad KV dump manifest: \(why)"
            case let .shapeMismatch(why): "KV dump does not fit the pool: \(why)"
            case let .badBlockFile(why): "bad KV block file: \(why)"
            }
        }
    }

    /// Reads the manifest in `directory`.
    public static func readManifest(in directory: URL) throws -> Manifest {
        let path = directory.appendingPathComponent("manifest.json").path
        let m: Manifest
        do { m = try JSONDecoder().decode(Manifest.self, from: Data(RegularFile.readAll(path, maxBytes: maxManifestBytes))) }
        catch let error as DataError { throw error }
        catch { throw LoadError.badManifest("\(path): \(JSONLines.describe(error))") }
        // Every number sizes an allocation or a loop later: bounded here, where it enters.
        let shapes = [m.layers, m.kvHeads, m.headDim, m.blockTokens]
        guard shapes.allSatisfy({ (1 ... 1 << 16).contains($0) }), (1 ... 1 << 30).contains(m.bytesPerBlock),
              m.promptTokens >= 0, m.blocks.count <= maxBlocks,
              m.blocks.allSatisfy({ !$0.file.isEmpty && !$0.file.contains("/") && $0.file != ".." && (0 ... m.blockTokens).contains($0.tokens) })
        else {
            throw LoadError.badManifest("\(path): a shape outside 1...65536, a block size outside 1...2^30, more than \(maxBlocks) blocks, or a block file that is not a plain name in the folder")
        }
        return m
    }

    /// The largest manifest read: 64 MiB.
    public static let maxManifestBytes = 1 << 26
    /// Most blocks one dump may list: 2^20.
    public static let maxBlocks = 1 << 20

    /// The bytes of a block file named by a manifest, refused unless they are exactly `bytes` long.
    public static func readBlock(_ name: String, in directory: URL, bytes: Int) throws -> [UInt8] {
        let path = directory.appendingPathComponent(name).path
        let data = try RegularFile.readAll(path, maxBytes: bytes)
        guard data.count == bytes else { throw LoadError.badBlockFile("\(path) has \(data.count) bytes, expected \(bytes)") }
        return data
    }

    /// Loads the dumped blocks in `directory` into `blockTable`'s blocks of `pool` (block i of the dump
    /// into `blockTable[i]`); f16 dumps are widened to fp32 (exact for values that came from f16, lossy
    /// for fp32 KV), f32 dumps restore the pool bit for bit. Throws before writing anything if the
    /// shape or any file size is wrong. O(blocks x block bytes).
    /// - Returns: the manifest.
    @discardableResult
    public static func load(from directory: URL, into pool: PagedKVPool, blockTable: [BlockID]) throws -> Manifest {
        let m = try readManifest(in: directory)
        guard m.layers == pool.layers, m.kvHeads == pool.kvHeads, m.headDim == pool.headDim,
              m.blockTokens == pool.blockTokens else {
            throw LoadError.shapeMismatch("dump is \(m.layers)x\(m.kvHeads)x\(m.headDim) at \(m.blockTokens) tokens per block")
        }
        guard m.blocks.count <= blockTable.count, blockTable.prefix(m.blocks.count).allSatisfy(pool.contains) else {
            throw LoadError.shapeMismatch("\(m.blocks.count) blocks do not fit the block table")
        }
        let expected = pool.floatsPerBlock * m.dtype.bytes
        var contents: [Data] = []
        for b in m.blocks {
            contents.append(Data(try readBlock(b.file, in: directory, bytes: expected)))
        }
        for (i, data) in contents.enumerated() {
            pool.withMutableBlockBytes(blockTable[i]) { dst in
                let out = dst.bindMemory(to: Float.self)
                data.withUnsafeBytes { src in
                    for j in 0 ..< out.count {
                        switch m.dtype {
                        case .f32: out[j] = Float(bitPattern: UInt32(littleEndian: src.loadUnaligned(fromByteOffset: 4 * j, as: UInt32.self)))
                        case .f16: out[j] = Float(Float16(bitPattern: UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * j, as: UInt16.self))))
                        }
                    }
                }
            }
        }
        return m
    }
}
