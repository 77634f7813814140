import KVCache
import Testing
@testable import KVHybrid

@Suite("adaptive policy: recurrence sketch and online tuning")
struct AdaptiveTuningTests {
    @Test func sketchNeverUndercountsAndAges() {
        var sketch = RecurrenceSketch(width: 64)
        var rng = SplitMix64(seed: 9)
        var counts: [UInt64: Int] = [:]
        // 63 additions: no halving yet; every estimate is at least the true count.
        for _ in 0 ..< 63 {
            let h = rng.next() % 20
            sketch.add(h)
            counts[h, default: 0] += 1
        }
        for (h, n) in counts { #expect(sketch.estimate(h) >= n) }
        #expect(sketch.estimate(12_345_678) <= 63)
        // The 64th addition halves every counter.
        let top = counts.max { $0.value < $1.value }!
        let before = sketch.estimate(top.key)
        sketch.add(999)
        #expect(sketch.estimate(top.key) == before / 2)
    }

    @Test func prefixHashReadsTheLengthAndTheTail() {
        let a: [Int32] = Array(0 ..< 200), b: [Int32] = [7] + Array(1 ..< 200)
        a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                // Same length and last 64 tokens: one hash; a different length or tail: another.
                #expect(RecurrenceSketch.hash(pa, count: 200) == RecurrenceSketch.hash(pb, count: 200))
                #expect(RecurrenceSketch.hash(pa, count: 100) != RecurrenceSketch.hash(pb, count: 200))
                #expect(RecurrenceSketch.hash(pa, count: 50) != RecurrenceSketch.hash(pb, count: 50))
            }
        }
    }

    /// Shared prompts with distinct suffixes: hits come only from branch checkpoints. A tuner started on
    /// a setting that never admits them (threshold 255) must move to the one that does after a window.
    @Test func tunerAdoptsTheSettingThatSavesMore() {
        let model = HybridModel.hybrid7B
        let never = HybridAlphaTuner.Candidate(alpha: 0, settings: .init(recurrenceWeight: 0, branchThreshold: 255))
        let marconi = HybridAlphaTuner.Candidate(alpha: 0, settings: .init(recurrenceWeight: 0, branchThreshold: 1))
        var tuner = HybridAlphaTuner(model: model, capacityBytes: 1 << 40, candidates: [never, marconi], window: 10)
        var rng = SplitMix64(seed: 1)
        let prompts: [[Int32]] = (0 ..< 3).map { p in (0 ..< 100).map { Int32(p * 1000 + $0) } }
        var adopted: [HybridAlphaTuner.Candidate] = []
        for i in 0 ..< 40 {
            let input = prompts[i % 3] + (0 ..< 5).map { _ in Int32(50_000 + rng.next() % 10_000) }
            let seq = input + [1, 2]
            input.withUnsafeBufferPointer { pi in
                seq.withUnsafeBufferPointer { ps in
                    if let next = tuner.observe(input: pi, sequence: ps) { adopted.append(next) }
                }
            }
        }
        #expect(adopted == [marconi])
        #expect(tuner.current == 1 && tuner.switches == 1)
    }
}
