import Foundation
import KVCache
import KVPlan
import Testing
@testable import KVChunks

/// The re-rotation against rotations computed in Double, and its group law, for both layouts.
struct RopeRotatorTests {
    static let layouts = RopeSpec.Layout.allCases

    func vectors(_ count: Int, _ stride: Int, seed: UInt64) -> [Float] {
        var rng = SplitMix64(seed: seed)
        return (0 ..< count * stride).map { _ in Float(Int(rng.next() % 20001) - 10000) / 10000 }
    }

    func rotated(_ v: [Float], _ rotator: RopeRotator, count: Int, stride: Int, by delta: Int,
                 portable: Bool = false) -> [Float] {
        var out = v
        out.withUnsafeMutableBufferPointer {
            rotator.rotate($0.baseAddress!, count: count, stride: stride, by: delta, portable: portable)
        }
        return out
    }

    /// Max over the vectors (`width` elements each) of max |a - b| / max |b| within the vector: rotation
    /// errors scale with a pair's length, not with each element.
    func relativeError(_ a: [Float], _ b: [Float], width: Int = 64) -> Double {
        stride(from: 0, to: b.count, by: width).map { v in
            let scale = b[v ..< v + width].map { abs(Double($0)) }.max()!
            return zip(a[v ..< v + width], b[v ..< v + width]).map { abs(Double($0) - Double($1)) }.max()! / scale
        }.max()!
    }

    @Test(arguments: layouts)
    func matchesRotationInDouble(layout: RopeSpec.Layout) throws {
        // headDim 72 with 40 rotated dims: a partial rotary whose pairs are not a multiple of 8 (scalar tails).
        let spec = try RopeSpec(base: 10_000, dims: 40, headDim: 72, layout: layout)
        let r = RopeRotator(spec: spec)
        let count = 5, stride = 72
        let v = vectors(count, stride, seed: 1)
        for delta in [1, 7, -3, 1234, -98_765] {
            for portable in [false, true] {
                let got = rotated(v, r, count: count, stride: stride, by: delta, portable: portable)
                for t in 0 ..< count {
                    let row = t * stride
                    for i in 0 ..< spec.pairs {
                        let (ia, ib) = layout == .adjacentPairs ? (2 * i, 2 * i + 1) : (i, i + spec.pairs)
                        let angle = Double(delta) * spec.inverseFrequency(i)
                        let a = Double(v[row + ia]), b = Double(v[row + ib])
                        #expect(abs(Double(got[row + ia]) - (a * cos(angle) - b * sin(angle))) < 1e-5)
                        #expect(abs(Double(got[row + ib]) - (a * sin(angle) + b * cos(angle))) < 1e-5)
                    }
                    // Dims past the rotated ones are untouched.
                    #expect(Array(got[row + spec.dims ..< row + stride]) == Array(v[row + spec.dims ..< row + stride]))
                }
            }
        }
    }

    @Test(arguments: layouts)
    func rotationsCompose(layout: RopeSpec.Layout) throws {
        let spec = try RopeSpec(base: 10_000, dims: 64, headDim: 64, layout: layout)
        let r = RopeRotator(spec: spec)
        let v = vectors(9, 64, seed: 2)
        for (d1, d2) in [(5, 11), (300, -299), (-4000, 1500), (2048, 2048)] {
            let twice = rotated(rotated(v, r, count: 9, stride: 64, by: d1), r, count: 9, stride: 64, by: d2)
            let once = rotated(v, r, count: 9, stride: 64, by: d1 + d2)
            #expect(relativeError(twice, once) < 1e-5, "R(\(d1))R(\(d2)) vs R(\(d1 + d2))")
        }
        // Back and forth returns the original; a zero shift leaves the bytes as they were.
        let back = rotated(rotated(v, r, count: 9, stride: 64, by: 777), r, count: 9, stride: 64, by: -777)
        #expect(relativeError(back, v) < 1e-5)
        #expect(rotated(v, r, count: 9, stride: 64, by: 0) == v)
        // A non-trivial shift does change the keys (the test above would pass for a no-op otherwise).
        #expect(relativeError(rotated(v, r, count: 9, stride: 64, by: 1), v) > 1e-3)
    }

    @Test(arguments: layouts)
    func simdAgreesWithPortable(layout: RopeSpec.Layout) throws {
        let spec = try RopeSpec(base: 500_000, dims: 128, headDim: 128, layout: layout)
        let r = RopeRotator(spec: spec)
        let v = vectors(16, 128, seed: 3)
        let a = rotated(v, r, count: 16, stride: 128, by: -37)
        let b = rotated(v, r, count: 16, stride: 128, by: -37, portable: true)
        #expect(relativeError(a, b, width: 128) < 1e-6)
    }

    @Test(arguments: [KVDType.fp16, .bf16])
    func sixteenBitElementsRotateWithinTheirPrecision(dtype: KVDType) throws {
        for layout in Self.layouts {
            let spec = try RopeSpec(base: 10_000, dims: 64, headDim: 64, layout: layout)
            let r = RopeRotator(spec: spec)
            let v = vectors(4, 64, seed: 4)
            // Round the inputs to the 16-bit type first, then compare with the fp32 rotation of those values.
            let halves: [UInt16] = v.map { dtype == .fp16 ? Float16($0).bitPattern : UInt16(truncatingIfNeeded: $0.bitPattern >> 16) }
            let widened: [Float] = halves.map { dtype == .fp16 ? Float(Float16(bitPattern: $0)) : Float(bitPattern: UInt32($0) << 16) }
            var got = halves
            got.withUnsafeMutableBufferPointer { r.rotate($0.baseAddress!, dtype: dtype, count: 4, stride: 64, by: 321) }
            let expected = rotated(widened, r, count: 4, stride: 64, by: 321)
            let gotF: [Float] = got.map { dtype == .fp16 ? Float(Float16(bitPattern: $0)) : Float(bitPattern: UInt32($0) << 16) }
            let tolerance: Float = dtype == .fp16 ? 1e-3 : 8e-3  // half an ulp at |x| <= 1.5
            for (g, e) in zip(gotF, expected) { #expect(abs(g - e) <= tolerance * max(1, abs(e))) }
            #expect(gotF != widened)
        }
    }

    @Test func specRejectsBadShapes() {
        #expect(throws: KVCacheError.self) { try RopeSpec(base: 10_000, dims: 63, headDim: 64, layout: .halfSplit) }
        #expect(throws: KVCacheError.self) { try RopeSpec(base: 10_000, dims: 128, headDim: 64, layout: .halfSplit) }
        #expect(throws: KVCacheError.self) { try RopeSpec(base: 1, dims: 64, headDim: 64, layout: .halfSplit) }
        #expect(throws: KVCacheError.self) { try RopeSpec(base: 10_000, dims: 2048, headDim: 2048, layout: .halfSplit) }
    }
}
