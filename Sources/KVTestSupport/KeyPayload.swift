import KVCache

/// The bytes a block with a given key must carry in every verifying run (the replay harness, tests,
/// stress tools): a pseudo-random pattern seeded by the key, different in every byte and
/// incompressible, so a block served for the wrong key, or damaged anywhere on its way through the
/// tiers, reads back wrong. O(bytes), allocates nothing.
public enum KeyPayload {
    /// Fills `out` with the payload of `key`.
    public static func fill(_ out: UnsafeMutableRawBufferPointer, key: BlockKey) {
        var rng = SplitMix64(seed: key.lo ^ (key.hi &* 0x9E37_79B9))
        var i = 0
        while i + 8 <= out.count { out.storeBytes(of: rng.next(), toByteOffset: i, as: UInt64.self); i += 8 }
        while i < out.count { out[i] = UInt8(truncatingIfNeeded: rng.next()); i += 1 }
    }

    /// The payload of `key`, `count` bytes long.
    public static func bytes(for key: BlockKey, count: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        out.withUnsafeMutableBytes { fill($0, key: key) }
        return out
    }

    /// Whether `bytes` is the payload of `key`. O(bytes).
    public static func matches(_ bytes: UnsafeRawBufferPointer, key: BlockKey) -> Bool {
        var rng = SplitMix64(seed: key.lo ^ (key.hi &* 0x9E37_79B9))
        var i = 0
        while i + 8 <= bytes.count {
            guard bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self) == rng.next() else { return false }
            i += 8
        }
        while i < bytes.count {
            guard bytes[i] == UInt8(truncatingIfNeeded: rng.next()) else { return false }
            i += 1
        }
        return true
    }
}
