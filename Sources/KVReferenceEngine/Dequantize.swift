/// Dequantization of the ggml block formats this engine reads, into fp32.
///
/// Each function converts `count` elements (a multiple of the type's block size) from `src` to `dst`
/// in O(count), allocating nothing. Layouts follow ggml-common.h:
/// - Q4_1 (32 elements in 20 bytes): f16 scale `d`, f16 minimum `m`, 16 bytes of nibbles; element `j`
///   (j < 16) is `d * (q[j] & 0xF) + m`, element `j + 16` is `d * (q[j] >> 4) + m`.
/// - Q8_0 (32 elements in 34 bytes): f16 scale `d`, 32 signed bytes; element `j` is `d * q[j]`.
/// - F16 / F32: IEEE half / single, little-endian.
enum Dequantize {
    /// Dispatches on `type`. - Precondition: `type.supportedBlockLayout != nil`.
    static func run(_ type: GGMLType, from src: UnsafeRawPointer, to dst: UnsafeMutablePointer<Float>, count: Int) {
        switch type {
        case .f32: dst.update(from: src.assumingMemoryBound(to: Float.self), count: count)
        case .f16: f16(src, dst, count)
        case .q4_1: q4_1(src, dst, count)
        case .q8_0: q8_0(src, dst, count)
        default: preconditionFailure("GGUFFile admits only supported types")
        }
    }

    @inline(__always)
    static func half(_ p: UnsafeRawPointer, _ offset: Int) -> Float {
        Float(Float16(bitPattern: p.loadUnaligned(fromByteOffset: offset, as: UInt16.self)))
    }

    static func f16(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, _ count: Int) {
        for i in 0 ..< count { dst[i] = half(src, 2 * i) }
    }

    static func q4_1(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, _ count: Int) {
        let u8 = src.assumingMemoryBound(to: UInt8.self)
        for b in 0 ..< count / 32 {
            let block = 20 * b
            let d = half(src, block), m = half(src, block + 2)
            let q = u8 + block + 4
            let out = dst + 32 * b
            for j in 0 ..< 16 {
                let byte = q[j]
                out[j] = d * Float(byte & 0xF) + m
                out[j + 16] = d * Float(byte >> 4) + m
            }
        }
    }

    static func q8_0(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, _ count: Int) {
        for b in 0 ..< count / 32 {
            let block = 34 * b
            let d = half(src, block)
            let q = (src + block + 2).assumingMemoryBound(to: Int8.self)
            let out = dst + 32 * b
            for j in 0 ..< 32 { out[j] = d * Float(q[j]) }
        }
    }
}
