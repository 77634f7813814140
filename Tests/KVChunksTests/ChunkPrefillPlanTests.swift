import KVCache
import Testing
@testable import KVChunks

struct ChunkPrefillPlanTests {
    let root = BlockHasher.rootKey(namespace: "smollm2")
    func chunk(_ tokens: [UInt32]) -> ChunkKey { tokens.withUnsafeBufferPointer { ChunkKey(root: root, tokens: $0) } }

    @Test func plansReusedSpansRecomputeAndFreshTokens() throws {
        var store = try ChunkStore(capacityBlocks: 64, blockTokens: 16)
        let a = chunk(Array(0 ..< 40)), b = chunk(Array(100 ..< 120)), missing = chunk([7, 7, 7])
        let (va, _) = try store.insert(a, tokens: 40, computedAt: 10, context: root)
        let (vb, _) = try store.insert(b, tokens: 20, computedAt: 0, context: root)
        let pieces = [PromptPiece(.cachedPrefix, tokens: 32), PromptPiece(.chunk(b), tokens: 20), PromptPiece(.fresh, tokens: 5),
                      PromptPiece(.chunk(missing), tokens: 3), PromptPiece(.chunk(a), tokens: 40), PromptPiece(.fresh, tokens: 9)]
        for selection in [TokenSelection.none, .leading(ratio: 0.15), .random(ratio: 0.3, seed: 9), .highDeviation(ratio: 0.15),
                          .contextImpact(ratio: 0.15)] {
            let plan = try ChunkPrefillPlan.build(pieces, store: &store, context: root, selection: selection)
            try plan.validate()
            #expect(plan.promptTokens == 109 && plan.prefix == 0 ..< 32 && plan.missingChunks == 1)
            #expect(plan.reused.map(\.variant) == [vb, va])
            #expect(plan.reused.map(\.target) == [32 ..< 52, 60 ..< 100])
            #expect(plan.reused.map(\.rotateBy) == [32, 50])
            #expect(plan.fresh == [52 ..< 60, 100 ..< 109])
            let budgets = plan.reused.map(\.recomputeBudget)
            switch selection {
            case .none: #expect(budgets == [0, 0] && plan.recompute.isEmpty)
            case .leading: #expect(plan.recompute == Array(32 ..< 35) + Array(60 ..< 66))
            case .random: #expect(budgets == [6, 12] && plan.recompute.count == 18)
            case .highDeviation: #expect(budgets == [3, 6] && plan.recompute.isEmpty)
            // No impact measured: 9 tokens split evenly (the odd one to the first), each chunk's leading ones.
            case .contextImpact: #expect(budgets == [5, 4] && plan.recompute == Array(32 ..< 37) + Array(60 ..< 64))
            }
            // Held while the plan runs: neither variant can be removed until released.
            #expect(throws: ChunkError.variantHeld(va)) { try store.remove(va) }
            try plan.release(from: &store)
        }
        try store.remove(va)
        try store.validate()
    }

    @Test func refusesBadPieces() throws {
        var store = try ChunkStore(capacityBlocks: 8, blockTokens: 16)
        let a = chunk([1, 2, 3])
        try store.insert(a, tokens: 3, computedAt: 0, context: root)
        #expect(throws: ChunkError.self) {
            try ChunkPrefillPlan.build([PromptPiece(.fresh, tokens: 2), PromptPiece(.cachedPrefix, tokens: 4)], store: &store, context: root)
        }
        #expect(throws: ChunkError.self) { try ChunkPrefillPlan.build([PromptPiece(.chunk(a), tokens: 4)], store: &store, context: root) }
        #expect(throws: ChunkError.self) { try ChunkPrefillPlan.build([PromptPiece(.fresh, tokens: 0)], store: &store, context: root) }
        #expect(throws: ChunkError.self) {
            try ChunkPrefillPlan.build([PromptPiece(.chunk(a), tokens: 3)], store: &store, context: root, selection: .leading(ratio: 2))
        }
        try store.validate()
        // A failed build acquired nothing: the variant can still be removed.
        let found = store.lookup(a)
        let id = try #require(found)
        try store.remove(id)
    }
}
