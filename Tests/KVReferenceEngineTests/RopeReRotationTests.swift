import KVCache
import KVChunks
import KVPlan
import Testing
@testable import KVReferenceEngine

/// PIE on the real model: a chunk's keys computed at position 0 and re-rotated by p equal the keys the
/// model computes for the same tokens at position p. Layer 0 is compared, the one layer whose keys do not
/// depend on the preceding tokens (deeper layers attend over them; repairing that is selective recompute).
@Suite("RoPE re-rotation on SmolLM2", .enabled(if: TestModel.isAvailable, TestModel.missingMessage))
struct RopeReRotationTests {
    @Test("keys at 0 rotated by p equal keys at p, and back (relative 1e-5, fp32)")
    func reRotatedKeysMatchTheModel() throws {
        let m = try TestModel.require()
        let c = m.model.config
        let spec = try RopeSpec(base: Double(c.ropeBase), dims: c.ropeDims, headDim: c.headDim, layout: .adjacentPairs)
        let rotator = RopeRotator(spec: spec)
        let chunk = m.tokenizer.encode("A retrieved passage about paged attention, reused at another position.")
        let preceding = m.tokenizer.encode("Some earlier context that pushes the passage to a later position in the prompt, "
                                           + "long enough to cross a block boundary or two.")
        let bt = 16, n = chunk.count, p = preceding.count, kvW = c.kvHeads * c.headDim
        let alone = PagedKVPool(config: c, blockTokens: bt, capacityBlocks: (n + bt - 1) / bt)
        _ = try m.model.forward(tokens: chunk, startPosition: 0, blockTable: (0 ..< Int32(alone.capacityBlocks)).map { $0 },
                                pool: alone)
        let later = PagedKVPool(config: c, blockTokens: bt, capacityBlocks: (p + n + bt - 1) / bt)
        _ = try m.model.forward(tokens: preceding + chunk, startPosition: 0,
                                blockTable: (0 ..< Int32(later.capacityBlocks)).map { $0 }, pool: later)

        func layer0Keys(_ pool: PagedKVPool, from start: Int) -> [Float] {
            var out: [Float] = []
            for t in start ..< start + n {
                let row = pool.pointer(block: BlockID(t / bt), layer: 0, value: false) + (t % bt) * kvW
                out.append(contentsOf: UnsafeBufferPointer(start: row, count: kvW))
            }
            return out
        }
        /// Max over heads of max |a - b| / max |b| within the head.
        func relativeError(_ a: [Float], _ b: [Float]) -> Float {
            stride(from: 0, to: b.count, by: c.headDim).map { h in
                let scale = b[h ..< h + c.headDim].map(abs).max()!
                return zip(a[h ..< h + c.headDim], b[h ..< h + c.headDim]).map { abs($0 - $1) }.max()! / scale
            }.max()!
        }
        let atZero = layer0Keys(alone, from: 0), atP = layer0Keys(later, from: p)
        #expect(relativeError(atZero, atP) > 1e-2)  // the positions really differ

        var moved = atZero
        moved.withUnsafeMutableBufferPointer { rotator.rotate($0.baseAddress!, count: n * c.kvHeads, stride: c.headDim, by: p) }
        #expect(relativeError(moved, atP) <= 1e-5, "rotated by +\(p)")

        var back = atP
        back.withUnsafeMutableBufferPointer { rotator.rotate($0.baseAddress!, count: n * c.kvHeads, stride: c.headDim, by: -p) }
        #expect(relativeError(back, atZero) <= 1e-5, "rotated by -\(p)")

        // The wrong layout does not reproduce the model's keys (so the layout matters and is the right one).
        let neox = RopeRotator(spec: try RopeSpec(base: spec.base, dims: spec.dims, headDim: spec.headDim, layout: .halfSplit))
        var wrong = atZero
        wrong.withUnsafeMutableBufferPointer { neox.rotate($0.baseAddress!, count: n * c.kvHeads, stride: c.headDim, by: p) }
        #expect(relativeError(wrong, atP) > 1e-2)
    }
}
