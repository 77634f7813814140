import KVCache
import KVPlan

/// KV-cache-like data for tests and benchmarks: per layer and K/V, every head-dimension channel has its
/// own scale (log-normal, with a few outlier channels, as real K caches have), and values are normally
/// distributed around zero with that scale, then rounded to the layout's dtype.
public enum SyntheticKV {
    /// Fills `out` (one block of `layout`) from `seed`. O(bytes).
    public static func fill(_ out: UnsafeMutableRawBufferPointer, layout: KVGeometry, seed: UInt64) {
        precondition(out.count >= layout.bytesPerBlock)
        var rng = SplitMix64(seed: seed)
        // Channel scales depend on the layer, not the block: the same model produces them for every block.
        let channels = layout.kvHeads * layout.headDim
        var scales = [Float](repeating: 1, count: channels)
        var offset = 0
        for layer in 0 ..< layout.layers {
            for kv in 0 ..< 2 {
                var srng = SplitMix64(seed: UInt64(layer * 2 + kv) &* 0x1234_5678_9ABC_DEF1)
                for c in 0 ..< channels {
                    var s = Float(exp(0.5 * Double(gaussian(&srng))))
                    if srng.next() % 32 == 0 { s *= 8 }      // outlier channels
                    scales[c] = (kv == 0 ? 1.0 : 0.25) * s
                }
                for _ in 0 ..< layout.blockTokens {
                    for c in 0 ..< channels {
                        let v = gaussian(&rng) * scales[c]
                        store(v, dtype: layout.dtype, into: out, at: &offset)
                    }
                }
            }
        }
    }

    /// A standard normal sample (Box-Muller).
    @inline(__always)
    static func gaussian(_ rng: inout SplitMix64) -> Float {
        let u1 = max(Double(rng.next() >> 11) * 0x1p-53, 1e-12)
        let u2 = Double(rng.next() >> 11) * 0x1p-53
        return Float((-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2))
    }

    @inline(__always)
    static func store(_ v: Float, dtype: KVDType, into out: UnsafeMutableRawBufferPointer, at offset: inout Int) {
        switch dtype {
        case .fp32:
            out.storeBytes(of: v.bitPattern.littleEndian, toByteOffset: offset, as: UInt32.self)
            offset += 4
        case .fp16:
            out.storeBytes(of: Float16(v).bitPattern.littleEndian, toByteOffset: offset, as: UInt16.self)
            offset += 2
        case .bf16:
            out.storeBytes(of: bfloat16Bits(v).littleEndian, toByteOffset: offset, as: UInt16.self)
            offset += 2
        case .fp8:
            out.storeBytes(of: fp8E4M3Bits(v), toByteOffset: offset, as: UInt8.self)
            offset += 1
        }
    }

    /// bfloat16 bits of `v`, rounded to nearest even.
    @inline(__always)
    public static func bfloat16Bits(_ v: Float) -> UInt16 {
        let b = v.bitPattern
        if v.isNaN { return 0x7FC0 }
        let rounded = b &+ 0x7FFF &+ ((b >> 16) & 1)
        return UInt16(truncatingIfNeeded: rounded >> 16)
    }

    /// FP8 E4M3 (bias 7, max 448, no infinities) bits of `v`, rounded to nearest, saturating.
    public static func fp8E4M3Bits(_ v: Float) -> UInt8 {
        let sign: UInt8 = v.sign == .minus ? 0x80 : 0
        let a = min(abs(v), 448)
        if a.isNaN { return 0x7F }
        if a < 0x1p-9 { return sign }
        var e = Int(a.exponent)
        if e < -6 {   // subnormal: step 2^-9
            let m = UInt8(min(7, (a / 0x1p-9).rounded()))
            return sign | m
        }
        var m = Int((((a / Float(sign: .plus, exponent: e, significand: 1)) - 1) * 8).rounded())
        if m == 8 { m = 0; e += 1 }
        if e > 8 { e = 8; m = 6 }
        return sign | UInt8((e + 7) << 3) | UInt8(m)
    }
}

#if canImport(Glibc)
import Glibc
#endif
