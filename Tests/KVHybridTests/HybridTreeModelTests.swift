import KVCache
import Testing
@testable import KVHybrid

/// Random lookups and inserts against the hybrid trees, with `validate()` (links, child counts,
/// depths, sizes equal to a recount) after every operation, the library policy never over capacity,
/// and, with room for everything, the raw match equal to the longest common prefix with any sequence
/// inserted before (a brute-force model).
@Suite("hybrid tree under random operations")
struct HybridTreeModelTests {
    /// Sequences drawn from a few shared heads, so that branches and splits are common.
    static func sequence(_ rng: inout SplitMix64) -> [Int32] {
        let head = Int32(rng.next() % 3)
        var s: [Int32] = (0 ..< Int(rng.next() % 6)).map { head * 10 + Int32($0) }
        for _ in 0 ..< Int(1 + rng.next() % 12) { s.append(Int32(rng.next() % 4)) }
        return s
    }

    static func lcp(_ a: [Int32], _ b: [Int32]) -> Int {
        var k = 0
        while k < a.count && k < b.count && a[k] == b[k] { k += 1 }
        return k
    }

    @Test(arguments: [HybridPolicy.sglangPlus, .marconiSim, .marconi, .adaptive])
    func radixTreeKeepsItsInvariants(policy: HybridPolicy) {
        let model = HybridModel.hybrid7B
        for seed in 0 ..< UInt64(20) {
            var rng = SplitMix64(seed: seed)
            // Room for about 3 nodes of 10 tokens: eviction on most inserts.
            let capacity = 3 * (model.checkpointBytes + 10 * model.kvBytesPerToken)
            var cache = HybridCache(model: model, policy: policy, capacityBytes: capacity, alpha: Double(seed % 3))
            for step in 0 ..< 150 {
                let seq = Self.sequence(&rng)
                let (hit, raw, _) = seq.withUnsafeBufferPointer { cache.lookup($0) }
                #expect(hit <= raw && raw <= seq.count)
                let inserted = seq.withUnsafeBufferPointer { s in cache.finishInsert(s, cost: cache.prepareInsert(s)) }
                if let problem = cache.tree.validate() {
                    Issue.record("seed \(seed) step \(step): \(problem)")
                    return
                }
                if let problem = cache.validate() {
                    Issue.record("seed \(seed) step \(step): \(problem)")
                    return
                }
                if cache.staysWithinCapacity {
                    #expect(cache.tree.bytes <= capacity, "seed \(seed) step \(step): over capacity")
                    #expect(inserted)
                    // What was just inserted is found whole.
                    let again = seq.withUnsafeBufferPointer { cache.lookup($0) }
                    #expect(again.hit == seq.count, "seed \(seed) step \(step)")
                }
            }
        }
    }

    @Test(arguments: [HybridPolicy.sglangPlus, .marconiSim, .marconi])
    func rawMatchIsTheLongestCommonPrefix(policy: HybridPolicy) {
        var rng = SplitMix64(seed: 7)
        var cache = HybridCache(model: .hybrid7B, policy: policy, capacityBytes: .max / 4)
        var seen: [[Int32]] = []
        for step in 0 ..< 400 {
            let seq = Self.sequence(&rng)
            let expected = seen.map { Self.lcp($0, seq) }.max() ?? 0
            let (hit, raw, branch) = seq.withUnsafeBufferPointer { cache.lookup($0) }
            #expect(raw == expected, "step \(step)")
            #expect(hit <= raw)
            // Every node holds a checkpoint: a full-edge match stops at a node, a partial one at a branch.
            #expect(branch == (hit < raw), "step \(step)")
            seq.withUnsafeBufferPointer { s in cache.finishInsert(s, cost: cache.prepareInsert(s)) }
            seen.append(seq)
            #expect(cache.tree.validate() == nil)
        }
        #expect(cache.evictionCalls == 0)
    }

    @Test func blockTreeKeepsItsInvariants() {
        let model = HybridModel.hybrid7B
        for seed in 0 ..< UInt64(20) {
            var rng = SplitMix64(seed: seed)
            var cache = HybridBlockCache(model: model, capacityBytes: 4 * model.checkpointBytes, blockTokens: 4)
            for step in 0 ..< 150 {
                let seq = Self.sequence(&rng)
                let hit = seq.withUnsafeBufferPointer { cache.lookup($0) }
                #expect(hit <= seq.count)
                seq.withUnsafeBufferPointer { cache.insert($0) }
                if let problem = cache.validate() {
                    Issue.record("seed \(seed) step \(step): \(problem)")
                    return
                }
                #expect(seq.withUnsafeBufferPointer { cache.lookup($0) } == seq.count)
            }
        }
    }
}
