/// The 64-bit linear congruential generator (Knuth's MMIX constants) of the benchmark workloads: the
/// high 31 bits of each state are the output. Deterministic and allocation-free; not for statistics.
struct LCG {
    var state: UInt64

    /// The next output, below 2^31. O(1).
    @inline(__always)
    mutating func next() -> UInt64 {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return state >> 33
    }
}
