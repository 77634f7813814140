import KVCache
import Testing
@testable import KVChunks

/// The selection functions against brute-force models over random inputs, and the plan's Cache-Craft
/// selection and exact spans.
struct RecomputeSelectionTests {
    @Test func topScoresEqualsSortingEveryIndex() {
        var rng = SplitMix64(seed: 5)
        for _ in 0 ..< 300 {
            let n = Int(rng.next() % 40)
            // Few distinct values so ties happen; now and then a NaN.
            let scores: [Float] = (0 ..< n).map { _ in rng.next() % 17 == 0 ? .nan : Float(rng.next() % 6) }
            let budget = Int(rng.next() % 45) - 2
            let chosen = RecomputeSelection.topScores(scores, budget: budget)
            let model = scores.indices.sorted { a, b in
                let x = scores[a].isNaN ? -Float.infinity : scores[a], y = scores[b].isNaN ? -Float.infinity : scores[b]
                return x > y || (x == y && (scores[a].isNaN == scores[b].isNaN ? a < b : scores[b].isNaN))
            }.prefix(max(0, min(budget, n))).sorted()
            #expect(chosen == Array(model), "scores \(scores) budget \(budget)")
        }
    }

    @Test func randomDrawsDistinctSortedIndicesUniformly() {
        var rng = SplitMix64(seed: 9)
        var hits = Array(repeating: 0, count: 10)
        for _ in 0 ..< 2000 {
            let chosen = RecomputeSelection.random(count: 10, budget: 3, rng: &rng)
            #expect(chosen.count == 3 && chosen == chosen.sorted() && Set(chosen).count == 3 && chosen.allSatisfy { (0 ..< 10).contains($0) })
            for i in chosen { hits[i] += 1 }
        }
        // 600 expected per index; a skewed draw (say, never the last index) lands far outside.
        #expect(hits.allSatisfy { (450 ... 750).contains($0) }, "\(hits)")
        #expect(RecomputeSelection.random(count: 4, budget: 9, rng: &rng) == [0, 1, 2, 3])
        #expect(RecomputeSelection.random(count: 0, budget: 2, rng: &rng).isEmpty)
    }

    @Test func allocateIsProportionalCappedAndComplete() throws {
        var rng = SplitMix64(seed: 3)
        for _ in 0 ..< 500 {
            let parts = Int(rng.next() % 6) + 1
            let weights = (0 ..< parts).map { _ in rng.next() % 4 == 0 ? 0 : Double(rng.next() % 100) / 10 }
            let capacities = (0 ..< parts).map { _ in Int(rng.next() % 30) }
            let budget = Int(rng.next() % 80)
            let got = try RecomputeSelection.allocate(budget, weights: weights, capacities: capacities)
            #expect(got.reduce(0, +) == min(budget, capacities.reduce(0, +)))
            #expect(zip(got, capacities).allSatisfy { $0 >= 0 && $0 <= $1 })
            // Proportional: a part below its capacity got at least its floor share of the whole budget.
            let total = weights.reduce(0, +)
            if total > 0 {
                for i in 0 ..< parts where got[i] < capacities[i] {
                    #expect(Double(got[i]) >= (Double(min(budget, capacities.reduce(0, +))) * weights[i] / total).rounded(.down) - 1e-9)
                }
            }
        }
        #expect(try RecomputeSelection.allocate(10, weights: [3, 1], capacities: [100, 100]) == [8, 2]
                || RecomputeSelection.allocate(10, weights: [3, 1], capacities: [100, 100]) == [7, 3])
        #expect(try RecomputeSelection.allocate(10, weights: [1, 0], capacities: [4, 100]) == [4, 6])
        #expect(throws: ChunkError.self) { try RecomputeSelection.allocate(1, weights: [1], capacities: [1, 2]) }
        #expect(throws: ChunkError.self) { try RecomputeSelection.allocate(1, weights: [-1], capacities: [1]) }
        #expect(throws: ChunkError.self) { try RecomputeSelection.allocate(-1, weights: [1], capacities: [1]) }
    }

    @Test func budgetAndDeviation() throws {
        #expect(try RecomputeSelection.budget(ratio: 0.15, tokens: 100) == 15)
        #expect(try RecomputeSelection.budget(ratio: 0.151, tokens: 100) == 16)
        #expect(try RecomputeSelection.budget(ratio: 1, tokens: 7) == 7 && RecomputeSelection.budget(ratio: 0, tokens: 7) == 0)
        #expect(throws: ChunkError.self) { try RecomputeSelection.budget(ratio: .nan, tokens: 3) }
        #expect(throws: ChunkError.self) { try RecomputeSelection.budget(ratio: 1.5, tokens: 3) }
        let a: [Float] = [1, 2, 3], b: [Float] = [1, 0, 6]
        #expect(RecomputeSelection.deviation(a, b, count: 3) == 13)
    }

    let root = BlockHasher.rootKey(namespace: "smollm2")
    func chunk(_ tokens: [UInt32]) -> ChunkKey { tokens.withUnsafeBufferPointer { ChunkKey(root: root, tokens: $0) } }

    @Test func contextImpactSplitsTheBudgetByImpactAndPicksTheTokensOfHighestImpact() throws {
        var store = try ChunkStore(capacityBlocks: 32, blockTokens: 4)
        let a = chunk(Array(0 ..< 10)), b = chunk(Array(20 ..< 30)), first = chunk([7, 8, 9, 10])
        // `first` follows the prefix at its own position under the same context: exact, never repaired.
        try store.insert(first, tokens: 4, computedAt: 6, context: root, tokenImpact: [9, 9, 9, 9])
        var impactA = [Float](repeating: 0.1, count: 10); impactA[3] = 0.9; impactA[8] = 0.8
        try store.insert(a, tokens: 10, computedAt: 6, context: root, tokenImpact: impactA)
        try store.insert(b, tokens: 10, computedAt: 6, context: root, contextImpact: 0)
        #expect(store.variant(store.lookup(a)!)!.contextImpact! == impactA.reduce(0, +) / 10)
        let pieces = [PromptPiece(.cachedPrefix, tokens: 6), PromptPiece(.chunk(first), tokens: 4), PromptPiece(.chunk(a), tokens: 10),
                      PromptPiece(.chunk(b), tokens: 10), PromptPiece(.fresh, tokens: 3)]
        let plan = try ChunkPrefillPlan.build(pieces, store: &store, context: root, selection: .contextImpact(ratio: 0.1))
        try plan.validate()
        #expect(plan.reused.map(\.exact) == [true, false, false])
        // 2 tokens (10% of the 20 non-exact reused ones), all to `a` (b has no impact), at its two highest.
        #expect(plan.reused.map(\.recomputeBudget) == [0, 2, 0])
        #expect(plan.recompute == [10 + 3, 10 + 8])
        try plan.release(from: &store)
        // Other selections leave the exact span alone too.
        let random = try ChunkPrefillPlan.build(pieces, store: &store, context: root, selection: .random(ratio: 1, seed: 1))
        #expect(random.recompute == Array(10 ..< 30))
        try random.release(from: &store)
        // Under another context nothing is exact.
        let other = try ChunkPrefillPlan.build(pieces, store: &store, context: BlockKey(lo: 1, hi: 2), selection: .none)
        #expect(other.reused.allSatisfy { !$0.exact })
        try other.release(from: &store)
        try store.validate()
    }

    @Test func tokenImpactsAreCheckedAndDroppedWithTheirVariant() throws {
        var store = try ChunkStore(capacityBlocks: 4, blockTokens: 4)
        #expect(throws: ChunkError.self) { try store.insert(chunk([1, 2]), tokens: 2, computedAt: 0, context: root, tokenImpact: [1]) }
        #expect(throws: ChunkError.self) { try store.insert(chunk([1, 2]), tokens: 2, computedAt: 0, context: root, tokenImpact: [1, .nan]) }
        #expect(store.count == 0)
        let (id, _) = try store.insert(chunk([1, 2]), tokens: 2, computedAt: 0, context: root, tokenImpact: [0.5, 0.25])
        #expect(try store.tokenImpact(of: id) == [0.5, 0.25])
        try store.remove(id)
        #expect(throws: ChunkError.unknownVariant(id)) { try store.tokenImpact(of: id) }
        let (plain, _) = try store.insert(chunk([3]), tokens: 1, computedAt: 0, context: root)
        #expect(try store.tokenImpact(of: plain) == nil)
        try store.validate()
    }
}
