import CKernels
import KVCache
import Testing

/// One attention call's operands: `rows` query rows against `count` positions whose K/V rows sit
/// `stride` floats apart (as one KV head inside a pool block), `headDim` wide.
private struct AttentionCase {
    let rows: Int, count: Int, headDim: Int, stride: Int
    let queries: [Float], keys: [Float], probs: [Float], values: [Float]

    init(rows: Int, count: Int, headDim: Int, stride: Int, rng: inout SplitMix64) {
        (self.rows, self.count, self.headDim, self.stride) = (rows, count, headDim, stride)
        queries = randomFloats(rows * headDim, &rng)
        keys = randomFloats(count * stride, &rng)
        probs = randomFloats(rows * count, &rng)
        values = randomFloats(count * stride, &rng)
    }

    func exactScores(scale: Float) -> [ExactSum] {
        (0 ..< rows * count).map { rt in
            let (r, t) = rt.quotientAndRemainder(dividingBy: count)
            var s = ExactSum()
            for i in 0 ..< headDim { s.add(scale * queries[r * headDim + i], keys[t * stride + i]) }
            return s
        }
    }

    func exactValues() -> [ExactSum] {
        (0 ..< rows * headDim).map { ri in
            let (r, i) = ri.quotientAndRemainder(dividingBy: headDim)
            var s = ExactSum()
            for t in 0 ..< count { s.add(probs[r * count + t], values[t * stride + i]) }
            return s
        }
    }
}

/// Head widths around the kernels' 8- and 32-lane steps, position counts around a 16-token block.
private let cases: [(rows: Int, count: Int, headDim: Int)] = [(1, 1, 8), (3, 16, 64), (3, 7, 40), (2, 17, 13), (5, 3, 96), (1, 9, 3)]

@Suite("single-token attention kernels")
struct AttentionKernelTests {
    typealias Scores = (UnsafePointer<Float>?, Int, Int, UnsafePointer<Float>?, Int, Int, Float,
                        UnsafeMutablePointer<Float>?, Int) -> Void
    typealias Values = (UnsafePointer<Float>?, Int, Int, UnsafePointer<Float>?, Int, Int, Int,
                        UnsafeMutablePointer<Float>?, Bool) -> Void
    static var implementations: [(String, Scores, Values)] { [
        ("dispatched", kv_attention_scores, kv_attention_values),
        ("portable", kv_attention_scores_portable, kv_attention_values_portable),
    ] }

    @Test("query-key scores equal the exact dot products, scaled, at the given output stride")
    func scores() {
        var rng = SplitMix64(seed: 21)
        for (name, scores, _) in Self.implementations {
            for shape in cases {
                let c = AttentionCase(rows: shape.rows, count: shape.count, headDim: shape.headDim,
                                      stride: shape.headDim * 3 + 1, rng: &rng)
                let outStride = c.count + 5
                var out = [Float](repeating: .nan, count: c.rows * outStride)
                scores(c.queries, c.rows, c.headDim, c.keys, c.stride, c.count, 0.125, &out, outStride)
                let packed = (0 ..< c.rows * c.count).map { out[($0 / c.count) * outStride + $0 % c.count] }
                expectWithinRounding(packed, c.exactScores(scale: 0.125), "\(name) \(shape)")
                let gaps = (0 ..< c.rows).flatMap { r in out[r * outStride + c.count ..< (r + 1) * outStride] }
                #expect(gaps.allSatisfy { $0.isNaN }, "\(name) \(shape) wrote outside its rows")
            }
        }
    }

    @Test("value sums equal the exact probability-weighted sums, set or accumulated")
    func values() {
        var rng = SplitMix64(seed: 22)
        for (name, _, values) in Self.implementations {
            for shape in cases {
                let c = AttentionCase(rows: shape.rows, count: shape.count, headDim: shape.headDim,
                                      stride: shape.headDim + 4, rng: &rng)
                var out = [Float](repeating: .nan, count: c.rows * c.headDim)
                values(c.probs, c.rows, c.count, c.values, c.stride, c.count, c.headDim, &out, false)
                expectWithinRounding(out, c.exactValues(), "\(name) \(shape) set")
                let before = randomFloats(out.count, &rng)
                out = before
                values(c.probs, c.rows, c.count, c.values, c.stride, c.count, c.headDim, &out, true)
                expectWithinRounding(out, c.exactValues(), offsets: before, "\(name) \(shape) accumulate")
            }
        }
    }
}
