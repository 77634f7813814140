import KVCache
import Testing

/// A sum of products computed in Double, with the sum of the products' magnitudes: the scale that an
/// fp32 sum's rounding error grows with (the sum itself can be near zero by cancellation).
struct ExactSum {
    var value: Double = 0
    var magnitude: Double = 0

    mutating func add(_ a: Float, _ b: Float) {
        let p = Double(a) * Double(b)
        value += p
        magnitude += abs(p)
    }
}

/// `count` floats uniform in [-1, 1], on a grid of 1e-4.
func randomFloats(_ count: Int, _ rng: inout SplitMix64) -> [Float] {
    (0 ..< count).map { _ in Float(Int(rng.next() % 20001) - 10000) / 10000 }
}

/// Expects `actual[i]` to equal `exact[i].value + offsets[i]` within 1e-4 relative to the sum's magnitude.
func expectWithinRounding(_ actual: [Float], _ exact: [ExactSum], offsets: [Float]? = nil, _ label: String,
                          sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(actual.count == exact.count, sourceLocation: sourceLocation)
    for (i, e) in exact.enumerated() where i < actual.count {
        let expected = e.value + Double(offsets?[i] ?? 0)
        #expect(abs(Double(actual[i]) - expected) <= 1e-4 * e.magnitude,
                "\(label) [\(i)]: \(actual[i]) vs \(expected)", sourceLocation: sourceLocation)
    }
}
