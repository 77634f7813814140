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

    /// The first decision comes at 5 x N0 (N0: the request whose insert first evicted, found here on a
    /// cache of the starting setting alone), long before the first window's end, and windows count from
    /// there; with `firstFactor` 0 nothing is decided before the window ends.
    @Test(arguments: [5, 0])
    func theFirstDecisionComesAtFiveTimesTheFirstEviction(firstFactor: Int) throws {
        let model = HybridModel.hybrid7B
        let never = HybridAlphaTuner.Candidate(alpha: 0, settings: .init(recurrenceWeight: 0, branchThreshold: 255))
        let marconi = HybridAlphaTuner.Candidate(alpha: 0, settings: .init(recurrenceWeight: 0, branchThreshold: 1))
        let capacity: Int64 = 150_000_000
        var tuner = HybridAlphaTuner(model: model, capacityBytes: capacity, candidates: [never, marconi], window: 60,
                                     firstFactor: firstFactor)
        var alone = HybridCache(model: model, policy: .adaptive, capacityBytes: capacity, alpha: 0, settings: never.settings)
        var rng = SplitMix64(seed: 3)
        let prompts: [[Int32]] = (0 ..< 3).map { p in (0 ..< 100).map { Int32(p * 1000 + $0) } }
        var firstEviction: Int?
        var decidedAt: [Int] = []
        for i in 1 ... 100 {
            let input = prompts[i % 3] + (0 ..< 5).map { _ in Int32(50_000 + rng.next() % 10_000) }
            let seq = input + [1, 2]
            try seq.withUnsafeBufferPointer { try alone.insert($0) }
            if firstEviction == nil && alone.evictionCalls > 0 { firstEviction = i }
            let before = tuner.decisions
            input.withUnsafeBufferPointer { pi in
                seq.withUnsafeBufferPointer { ps in _ = tuner.observe(input: pi, sequence: ps) }
            }
            if tuner.decisions > before { decidedAt.append(i) }
        }
        let n0 = try #require(firstEviction)
        #expect(5 * n0 < 60, "the scenario must evict early (N0 \(n0))")
        #expect(decidedAt == (firstFactor == 0 ? [60] : [5 * n0, 5 * n0 + 60].filter { $0 <= 100 }))
    }
}
