/// Text-to-token-count estimate used by trace readers that carry text but no token counts.
///
/// About 4 bytes of English text per token (GPT/Llama BPE vocabularies average 3.7-4.2 on prose):
/// every run of letters or digits costs one token per started 4 bytes, every other non-space byte one
/// token. Expect +-15% against a real tokenizer. O(n), allocates nothing.
public enum TextTokenEstimate {
    public static func count(_ text: String) -> Int {
        var tokens = 0
        var run = 0
        for b in text.utf8 {
            let alnum = (b | 0x20 >= 0x61 && b | 0x20 <= 0x7a) || (b >= 0x30 && b <= 0x39) || b >= 0x80
            if alnum {
                run += 1
            } else {
                if run > 0 { tokens += (run + 3) / 4; run = 0 }
                if b != 0x20 && b != 0x09 && b != 0x0d { tokens += 1 }
            }
        }
        if run > 0 { tokens += (run + 3) / 4 }
        return tokens
    }

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
