/// GPT-2's reversible map between bytes and printable Unicode scalars, used by byte-level BPE so that
/// every byte sequence has a spelling in the vocabulary.
///
/// Bytes `!`...`~`, `¡`...`¬` and `®`...`ÿ` stand for themselves; the other 68 bytes map, in order, to
/// U+0100 and up. Both directions are table lookups.
struct ByteLevelAlphabet: Sendable {
    /// Scalar for each byte.
    let scalarOfByte: [Unicode.Scalar]
    /// Byte for each scalar value below 0x200 (`-1` where the scalar stands for no byte).
    let byteOfScalar: [Int16]

    init() {
        var scalars = [Unicode.Scalar](repeating: " ", count: 256)
        var bytes = [Int16](repeating: -1, count: 0x200)
        var next: UInt32 = 256
        for b in 0 ..< 256 {
            let printable = (33 ... 126).contains(b) || (161 ... 172).contains(b) || (174 ... 255).contains(b)
            let value: UInt32 = printable ? UInt32(b) : { defer { next += 1 }; return next }()
            scalars[b] = Unicode.Scalar(value)!
            bytes[Int(value)] = Int16(b)
        }
        scalarOfByte = scalars
        byteOfScalar = bytes
    }

    /// The byte a scalar of a token's spelling stands for, or nil if it stands for none.
    @inline(__always)
    func byte(for scalar: Unicode.Scalar) -> UInt8? {
        let v = Int(scalar.value)
        guard v < byteOfScalar.count, byteOfScalar[v] >= 0 else { return nil }
        return UInt8(byteOfScalar[v])
    }
}
