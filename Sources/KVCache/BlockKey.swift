/// The identity of one full block of tokens: a 128-bit chained hash of the block's parent key, its
/// token ids and any extra keys that must keep caches apart (see `BlockHasher` and docs/BLOCK_KEYS.md).
///
/// Equal keys mean equal prefixes: a key covers every token from the start of the sequence up to and
/// including its block, so one hash probe finds a cached prefix block.
public struct BlockKey: Hashable, Sendable, BitwiseCopyable, Comparable, CustomStringConvertible {
    /// Low 64 bits (XXH128_hash_t.low64).
    public var lo: UInt64
    /// High 64 bits (XXH128_hash_t.high64).
    public var hi: UInt64

    @inlinable
    public init(lo: UInt64, hi: UInt64) {
        self.lo = lo
        self.hi = hi
    }

    /// The all-zero key. `BlockHasher` never produces it for a real block (probability 2^-128); the
    /// key index uses it as its empty-slot marker.
    public static let zero = BlockKey(lo: 0, hi: 0)

    @inlinable
    public static func < (a: BlockKey, b: BlockKey) -> Bool {
        (a.hi, a.lo) < (b.hi, b.lo)
    }

    /// 32 lowercase hex digits, high half first (the order XXH128_canonical_t uses).
    public var description: String {
        let h = String(hi, radix: 16), l = String(lo, radix: 16)
        return String(repeating: "0", count: 16 - h.count) + h + String(repeating: "0", count: 16 - l.count) + l
    }

    /// Parses the 32-hex-digit form produced by `description`.
    public init?(hex: some StringProtocol) {
        guard hex.count == 32,
              let h = UInt64(hex.prefix(16), radix: 16),
              let l = UInt64(hex.suffix(16), radix: 16) else { return nil }
        self.init(lo: l, hi: h)
    }
}
