/// Stable hashes for trace readers that derive prefix hash ids from text-level identities (a
/// conversation id and a block index), identical across processes and runs.
public enum SessionHash {
    /// FNV-1a 64 of the UTF-8 bytes: stable across processes (unlike `Hasher`).
    public static func stableHash(_ s: String) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in s.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return h
    }

    /// Mixes two words into one (SplitMix64 finalizer).
    public static func mix(_ a: UInt64, _ b: UInt64) -> UInt64 {
        var z = a ^ (b &* 0x9E37_79B9_7F4A_7C15)
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
