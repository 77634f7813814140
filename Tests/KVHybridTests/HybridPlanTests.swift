import KVCache
import Testing
@testable import KVHybrid

/// The engine contract under random requests: plan, then commit with the branch and end states saved
/// or not, with `validate()` after each call, the cache never over capacity, a mirror of the slots
/// built from the checkpoint events equal to the tree's, and refused calls changing nothing.
@Suite("hybrid engine contract")
struct HybridPlanTests {
    struct Snapshot: Equatable {
        var bytes: Int64, checkpoints: Int, tokens: Int, generation: UInt64, clock: Int64
        init(_ c: HybridCache) {
            bytes = c.tree.bytes
            checkpoints = c.tree.checkpoints
            tokens = c.tree.cachedTokens
            generation = c.generation
            clock = c.clock
        }
    }

    static func slots(_ c: HybridCache) -> Set<Int32> {
        var s = Set<Int32>()
        for i in 1 ..< c.tree.parent.count where c.tree.parent[i] != HybridPrefixTree.freedMark && c.tree.hasCheckpoint(Int32(i)) {
            s.insert(c.tree.checkpointSlot(Int32(i)))
        }
        return s
    }

    @Test func randomPlansAndCommitsKeepTheContract() throws {
        let model = HybridModel.hybrid7B
        for seed in 0 ..< UInt64(12) {
            var rng = SplitMix64(seed: seed)
            let capacity = 4 * (model.checkpointBytes + 10 * model.kvBytesPerToken)
            var cache = HybridCache(model: model, policy: .adaptive, capacityBytes: capacity, alpha: Double(seed % 3) / 2)
            cache.setRecordsEvents(true)
            if seed % 2 == 1 { cache.enableOnlineTuning(window: 5) }
            var mirror = Set<Int32>()
            var branches = 0, hits = 0
            for step in 0 ..< 200 {
                let prompt = HybridTreeModelTests.sequence(&rng)
                let seq = prompt + (0 ..< Int(rng.next() % 4)).map { _ in Int32(rng.next() % 4) }
                let plan = try prompt.withUnsafeBufferPointer { p throws(HybridCacheError) in try cache.plan(p) }
                #expect(plan.hitTokens <= plan.rawTokens && plan.rawTokens <= prompt.count)
                #expect((plan.hitTokens == 0) == (plan.restoreSlot == -1))
                if let b = plan.saveBranchAt {
                    #expect(b > plan.hitTokens && b < prompt.count)
                    branches += 1
                }
                if plan.hitTokens > 0 { hits += 1 }
                let savedBranch = rng.next() % 4 != 0, savedEnd = rng.next() % 5 != 0
                try seq.withUnsafeBufferPointer { s throws(HybridCacheError) in
                    try cache.commit(sequence: s, plan: plan, savedBranch: savedBranch, savedEnd: savedEnd)
                }
                if let problem = cache.validate() {
                    Issue.record("seed \(seed) step \(step): \(problem)")
                    return
                }
                for e in cache.takeEvents() {
                    switch e {
                    case .stored(let slot, _): #expect(mirror.insert(slot).inserted, "slot \(slot) stored twice")
                    case .removed(let slot, _): #expect(mirror.remove(slot) != nil, "slot \(slot) removed but not held")
                    }
                }
                #expect(mirror == Self.slots(cache), "seed \(seed) step \(step)")
                if savedEnd {
                    let again = try seq.withUnsafeBufferPointer { s throws(HybridCacheError) in try cache.plan(s) }
                    #expect(again.hitTokens == seq.count, "seed \(seed) step \(step): the committed sequence is served whole")
                }
            }
            // The run exercised both halves of the contract: branch states to save and hits to restore.
            #expect(branches > 0 && hits > 0, "seed \(seed): \(branches) branch points, \(hits) hits")
        }
    }

    @Test func aStalePlanChangesNothing() throws {
        var cache = HybridCache(model: .hybrid7B, policy: .adaptive, capacityBytes: 1 << 40)
        let a: [Int32] = [1, 2, 3, 4], b: [Int32] = [1, 2, 9]
        let plan = try a.withUnsafeBufferPointer { p throws(HybridCacheError) in try cache.plan(p) }
        try b.withUnsafeBufferPointer { s throws(HybridCacheError) in try cache.insert(s) }
        let before = Snapshot(cache)
        #expect(throws: HybridCacheError.stalePlan) {
            try a.withUnsafeBufferPointer { s throws(HybridCacheError) in
                try cache.commit(sequence: s, plan: plan, savedBranch: true, savedEnd: true)
            }
        }
        #expect(Snapshot(cache) == before)
    }

    @Test(arguments: [HybridPolicy.marconi, .adaptive])
    func aSequenceThatCannotFitIsRefusedAndChangesNothing(policy: HybridPolicy) throws {
        let model = HybridModel.hybrid7B
        let capacity = model.checkpointBytes + 20 * model.kvBytesPerToken
        var cache = HybridCache(model: model, policy: policy, capacityBytes: capacity)
        let small: [Int32] = Array(0 ..< 15), large: [Int32] = Array(100 ..< 121)
        try small.withUnsafeBufferPointer { s throws(HybridCacheError) in try cache.insert(s) }
        let before = Snapshot(cache)
        #expect(throws: HybridCacheError.tooLarge(bytes: model.checkpointBytes + 21 * model.kvBytesPerToken, capacity: capacity)) {
            try large.withUnsafeBufferPointer { s throws(HybridCacheError) in try cache.insert(s) }
        }
        #expect(Snapshot(cache) == before)
        #expect(cache.validate() == nil)
        // Exactly the capacity fits, after evicting the rest.
        let exact: [Int32] = Array(200 ..< 220)
        try exact.withUnsafeBufferPointer { s throws(HybridCacheError) in try cache.insert(s) }
        #expect(cache.tree.bytes == capacity)
        #expect(cache.validate() == nil)
    }

    @Test func aMissingBranchStateFallsBackToTheNearestCheckpoint() throws {
        // Threshold 1: the second sequence's branch point is admitted at once.
        var cache = HybridCache(model: .hybrid7B, policy: .adaptive, capacityBytes: 1 << 40,
                                settings: .init(recurrenceWeight: 0, branchThreshold: 1, dropSuperseded: true))
        let a: [Int32] = [1, 2, 3, 4, 5, 6], b: [Int32] = [1, 2, 3, 7, 8], c: [Int32] = [1, 2, 3, 9]
        for (seq, savedBranch) in [(a, true), (b, false)] {
            let plan = try seq.withUnsafeBufferPointer { p throws(HybridCacheError) in try cache.plan(p) }
            if seq == b { #expect(plan.saveBranchAt == 3 && plan.hitTokens == 0 && plan.rawTokens == 3) }
            try seq.withUnsafeBufferPointer { s throws(HybridCacheError) in
                try cache.commit(sequence: s, plan: plan, savedBranch: savedBranch, savedEnd: true)
            }
        }
        // The branch state was not saved: c shares 3 tokens of KV but must prefill from 0.
        let plan = try c.withUnsafeBufferPointer { p throws(HybridCacheError) in try cache.plan(p) }
        #expect(plan.hitTokens == 0 && plan.restoreSlot == -1 && plan.rawTokens == 3)
        #expect(plan.saveBranchAt == 3)
        try c.withUnsafeBufferPointer { s throws(HybridCacheError) in
            try cache.commit(sequence: s, plan: plan, savedBranch: true, savedEnd: true)
        }
        let next = try c.withUnsafeBufferPointer { p throws(HybridCacheError) in try cache.plan(UnsafeBufferPointer(rebasing: p[0 ..< 3])) }
        #expect(next.hitTokens == 3 && next.restoreSlot >= 0)
        #expect(cache.validate() == nil)
    }
}
