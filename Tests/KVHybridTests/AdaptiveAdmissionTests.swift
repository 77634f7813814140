import KVCache
import Testing
@testable import KVHybrid

/// The adaptive admission's two rules about what a new sequence replaces or keeps: a superseded
/// checkpoint is the end of one earlier sequence, never a branch point left a leaf by evictions; and a
/// sequence larger than the cache leaves its longest fitting prefix, which the next step of the same
/// loop hits.
@Suite("adaptive admission: superseded checkpoints and sequences larger than the cache")
struct AdaptiveAdmissionTests {
    static let settings = HybridCache.AdaptiveSettings(recurrenceWeight: 0, branchThreshold: 1, dropSuperseded: true)

    static func lookupAndInsert(_ cache: inout HybridCache, _ seq: [Int32]) throws {
        try seq.withUnsafeBufferPointer { s throws(HybridCacheError) in
            _ = cache.lookup(s)
            try cache.insert(s)
        }
    }

    static func hit(_ cache: inout HybridCache, _ seq: [Int32]) -> Int {
        seq.withUnsafeBufferPointer { cache.lookup($0).hit }
    }

    @Test func aBranchPointLeftALeafKeepsItsCheckpointWhenContinued() throws {
        var cache = HybridCache(model: .hybrid7B, policy: .adaptive, capacityBytes: 1 << 40, settings: Self.settings)
        let head: [Int32] = Array(1 ... 8)
        try Self.lookupAndInsert(&cache, head + [100, 101])
        try Self.lookupAndInsert(&cache, head + [200, 201])
        // The head is a branch point with a checkpoint; its two sequences go (as evictions would take them).
        let branch = head.withUnsafeBufferPointer { cache.tree.match($0).node }
        #expect(cache.tree.tokensFromRoot(branch) == head.count && cache.tree.hasCheckpoint(branch))
        while !cache.tree.isLeaf(branch) { cache.tree.removeLeaf(cache.tree.firstChild[Int(branch)]) }
        #expect(cache.tree.branched[Int(branch)])
        // A third sequence continues the head: the head's state is shared, not superseded.
        try Self.lookupAndInsert(&cache, head + [300, 301])
        #expect(Self.hit(&cache, head + [400]) == head.count)
        #expect(cache.validate() == nil)
    }

    @Test func theEndOfOneSequenceIsSupersededByItsContinuation() throws {
        var cache = HybridCache(model: .hybrid7B, policy: .adaptive, capacityBytes: 1 << 40, settings: Self.settings)
        let turn: [Int32] = Array(1 ... 8)
        try Self.lookupAndInsert(&cache, turn)
        try Self.lookupAndInsert(&cache, turn + [9, 10])
        // One state for the conversation: the first turn's end was dropped with its node.
        #expect(cache.tree.checkpoints == 1 && cache.tree.nodeCount == 1)
        #expect(Self.hit(&cache, turn + [500]) == 0)
        #expect(cache.validate() == nil)
    }

    @Test func aSequenceLargerThanTheCacheLeavesItsLongestFittingPrefix() {
        let model = HybridModel.hybrid7B
        let capacity = model.checkpointBytes + 20 * model.kvBytesPerToken
        let step1 = HybridReplay.Request(input: Array(0 ..< 18), output: Array(18 ..< 25))
        let step2 = HybridReplay.Request(input: Array(0 ..< 30), output: [99])
        let fixed = HybridReplay.Adaptive(candidates: [.init(alpha: 0, settings: Self.settings)])
        let r = HybridReplay.run([step1, step2], model: model, capacityBytes: capacity, policy: .adaptive, adaptive: fixed)
        // 25 tokens do not fit; the first 20 do, and the next step hits them.
        #expect(r.steps.map(\.hitTokens) == [0, 20])
        #expect(r.steps[0].cachedTokensAfter == 20 && r.steps[0].checkpointsAfter == 1)
        // The library's marconi refuses the sequence: nothing to hit.
        let m = HybridReplay.run([step1, step2], model: model, capacityBytes: capacity, policy: .marconi)
        #expect(m.steps.map(\.hitTokens) == [0, 0])
        var cache = HybridCache(model: model, policy: .adaptive, capacityBytes: capacity, settings: Self.settings)
        #expect(cache.cachedPrefix(25) == 20 && cache.cachedPrefix(20) == 20)
        Array(Int32(0) ..< 25).withUnsafeBufferPointer { s in #expect(throws: Never.self) { try cache.insertFitting(s) } }
        #expect(cache.tree.bytes == capacity && cache.validate() == nil)
    }
}
