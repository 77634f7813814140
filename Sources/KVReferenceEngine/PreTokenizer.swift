/// Splits text into the chunks that BPE merges never cross, as the `smollm` pre-tokenizer does
/// (llama.cpp `LLAMA_VOCAB_PRE_TYPE_SMOLLM`; Hugging Face `Digits(individual_digits) + ByteLevel`):
///
/// 1. every numeric scalar (`\p{N}`) is a chunk of its own;
/// 2. each remaining stretch is split by GPT-2's pattern
///    `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`,
///    with any unmatched scalar a chunk of its own.
///
/// O(scalars). Chunks are returned as ranges into the given scalar array.
enum PreTokenizer {
    /// The character classes the pattern uses, from Unicode general categories and White_Space.
    struct Flags {
        var letter = false, number = false, whitespace = false, inRange = false
        @inline(__always)
        init(_ s: Unicode.Scalar) {
            inRange = true
            let p = s.properties
            switch p.generalCategory {
            case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: letter = true
            case .decimalNumber, .letterNumber, .otherNumber: number = true
            default: break
            }
            whitespace = p.isWhitespace
        }
        init() {}
        var isOther: Bool { inRange && !(letter || number || whitespace) }
    }

    /// Appends the chunk ranges of `scalars` to `chunks`.
    static func split(_ scalars: [Unicode.Scalar], into chunks: inout [Range<Int>]) {
        var start = 0
        for (i, s) in scalars.enumerated() where Flags(s).number {
            if start < i { splitGPT2(scalars, start ..< i, into: &chunks) }
            chunks.append(i ..< i + 1)
            start = i + 1
        }
        if start < scalars.count { splitGPT2(scalars, start ..< scalars.count, into: &chunks) }
    }

    /// GPT-2's pattern over `range`; characters outside it count as absent (lookahead stops there).
    static func splitGPT2(_ s: [Unicode.Scalar], _ range: Range<Int>, into chunks: inout [Range<Int>]) {
        let end = range.upperBound
        func flags(_ i: Int) -> Flags { i < end ? Flags(s[i]) : Flags() }
        var pos = range.lowerBound
        while pos < end {
            let start = pos
            let c = s[pos]
            // 's|'t|'re|'ve|'m|'ll|'d
            if c == "'" && pos + 1 < end {
                let n = s[pos + 1]
                if n == "s" || n == "t" || n == "m" || n == "d" {
                    chunks.append(pos ..< pos + 2); pos += 2; continue
                }
                if pos + 2 < end {
                    let n2 = s[pos + 2]
                    if (n == "r" && n2 == "e") || (n == "v" && n2 == "e") || (n == "l" && n2 == "l") {
                        chunks.append(pos ..< pos + 3); pos += 3; continue
                    }
                }
            }
            var f = c == " " ? flags(pos + 1) : flags(pos)
            if f.letter {                                   //  ?\p{L}+
                if c == " " { pos += 1 }
                while f.letter { pos += 1; f = flags(pos) }
                chunks.append(start ..< pos); continue
            }
            if f.number {                                   //  ?\p{N}+
                if c == " " { pos += 1 }
                while f.number { pos += 1; f = flags(pos) }
                chunks.append(start ..< pos); continue
            }
            if f.isOther {                                  //  ?[^\s\p{L}\p{N}]+
                if c == " " { pos += 1 }
                while f.isOther { pos += 1; f = flags(pos) }
                chunks.append(start ..< pos); continue
            }
            var spaces = 0
            while flags(pos + spaces).whitespace { spaces += 1 }
            if spaces > 1 && pos + spaces < end {           // \s+(?!\S): leave the last one for the next chunk
                pos += spaces - 1
                chunks.append(start ..< pos); continue
            }
            if spaces > 0 {                                 // \s+
                pos += spaces
                chunks.append(start ..< pos); continue
            }
            pos += 1                                        // no match: the scalar alone
            chunks.append(start ..< pos)
        }
    }
}
