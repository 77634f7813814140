/// The position-independent identity of a chunk of tokens (a retrieved passage, a tool result, a system
/// prompt): equal keys mean the same token ids under the same model, adapter and tenant salt, wherever the
/// chunk sits in a prompt. Unlike a `BlockKey`, a chunk key does not chain from the preceding tokens, so a
/// passage seen first at position 900 and later at position 40 has one key.
///
/// Specification (docs/BLOCK_KEYS.md, "Chunk keys", with test vectors):
///
///     chunk = XXH3_128( "kvcache-chunk-v1" 0x00 | root.lo (u64 LE) | root.hi (u64 LE)
///                       | token_0 .. token_{n-1} (u32 LE each) )
///
/// where `root` is `BlockHasher.rootKey(namespace:lora:salt:)`, the same root block chains start from.
/// The 17-byte domain tag makes every chunk-key input 1 mod 4 bytes long, while every block-key input is
/// 0 mod 4 and every root input starts with "kvcache-root-v1": the three kinds of input never coincide,
/// so a chunk key equals a block key only by an XXH3 collision (2^-128).
///
/// A value type of two words. Computing one costs one XXH3-128 call over 33 + 4n bytes; the input is
/// assembled in `withUnsafeTemporaryAllocation` (on the stack unless the chunk is too large for it),
/// as `BlockHasher` does. An empty chunk has no key.
public struct ChunkKey: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// The 128 bits, in the `BlockKey` representation (so a chunk key can live in the same key indexes).
    public var bits: BlockKey

    @inlinable
    public init(bits: BlockKey) { self.bits = bits }

    /// The domain tag that separates chunk keys from block and root keys (17 bytes with its 0x00).
    public static let domainTag = "kvcache-chunk-v1"

    /// The key of `tokens` under `root` (a `BlockHasher.rootKey`). O(n), no heap allocation for chunks
    /// that fit the stack.
    /// - Precondition: `tokens` is not empty.
    public init(root: BlockKey, tokens: UnsafeBufferPointer<UInt32>) {
        precondition(!tokens.isEmpty, "an empty chunk has no key")
        let tag = Self.domainTag.utf8
        let header = tag.count + 1 + 16
        let size = header + 4 * tokens.count
        bits = withUnsafeTemporaryAllocation(byteCount: size, alignment: 8) { buf in
            var offset = 0
            for byte in tag { buf[offset] = byte; offset += 1 }
            buf[offset] = 0
            buf.storeBytes(of: root.lo.littleEndian, toByteOffset: offset + 1, as: UInt64.self)
            buf.storeBytes(of: root.hi.littleEndian, toByteOffset: offset + 9, as: UInt64.self)
            offset = header
            #if _endian(little)
            UnsafeMutableRawBufferPointer(rebasing: buf[offset ..< size]).copyMemory(from: UnsafeRawBufferPointer(tokens))
            #else
            for t in tokens {
                buf.storeBytes(of: t.littleEndian, toByteOffset: offset, as: UInt32.self)
                offset += 4
            }
            #endif
            return BlockHasher.hash128(UnsafeRawBufferPointer(buf))
        }
    }

    /// The key of `tokens` under the root of `namespace`, `lora` and `salt`.
    public init(tokens: [UInt32], namespace: String = "", lora: String = "", salt: String = "") {
        let root = BlockHasher.rootKey(namespace: namespace, lora: lora, salt: salt)
        self = tokens.withUnsafeBufferPointer { ChunkKey(root: root, tokens: $0) }
    }

    @inlinable
    public static func < (a: ChunkKey, b: ChunkKey) -> Bool { a.bits < b.bits }

    /// 32 lowercase hex digits, high half first (as `BlockKey`).
    public var description: String { bits.description }
}
