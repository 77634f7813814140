import KVCache

/// Small, process-independent hash functions for feature hashing and data splits.
///
/// Swift's `Hasher` is seeded per process, so it cannot give the same feature index in training and
/// serving; these functions always do.
public enum StableHash {
    public static let fnvOffset: UInt64 = 0xcbf2_9ce4_8422_2325
    public static let fnvPrime: UInt64 = 0x0000_0100_0000_01b3

    /// FNV-1a over the UTF-8 bytes of `text`, continuing from `seed`. O(n) in the byte count.
    @inlinable
    public static func fnv1a(_ text: String, seed: UInt64 = fnvOffset) -> UInt64 {
        var h = seed
        for b in text.utf8 { h = (h ^ UInt64(b)) &* fnvPrime }
        return h
    }

    /// SplitMix64's step and finaliser (the first output of `SplitMix64(seed: x)`): spreads every input
    /// bit over the whole word. O(1).
    @inlinable
    public static func mix(_ x: UInt64) -> UInt64 {
        var generator = SplitMix64(seed: x)
        return generator.next()
    }

    /// Combines two hashes, order-sensitively. O(1).
    @inlinable
    public static func combine(_ a: UInt64, _ b: UInt64) -> UInt64 {
        mix(a &* 0x9e37_79b9_7f4a_7c15 ^ b)
    }
}
