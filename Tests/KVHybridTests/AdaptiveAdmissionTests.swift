import KVCache
import Testing
@testable import KVHybrid

/// What the adaptive admission supersedes: the end of one earlier sequence that a longer one continues,
/// never a branch point that evictions left a leaf (a shared prefix).
@Suite("adaptive admission: superseded checkpoints")
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
}
