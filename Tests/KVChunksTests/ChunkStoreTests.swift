import KVCache
import Testing
@testable import KVChunks

/// The chunk store against a plain model under random operations, with validate() after each; a fake KV
/// memory records which variant wrote each block, so a block handed to two variants, or freed while
/// still listed, reads back the wrong owner.
struct ChunkStoreTests {
    func key(_ n: UInt64) -> ChunkKey { ChunkKey(bits: BlockKey(lo: n &* 0x9E37_79B9_7F4A_7C15 | 1, hi: n)) }
    func context(_ n: UInt64) -> BlockKey { BlockKey(lo: n + 1, hi: 0xC0) }
    /// Cache-Craft statistics for half the (chunk, context) pairs, none for the others.
    func impacts(_ c: UInt64, _ x: UInt64, _ n: Int) -> [Float]? {
        (c + x) % 2 == 0 ? (0 ..< n).map { Float((UInt64($0) * 7 + c) % 5) / 4 } : nil
    }

    @Test func randomOperationsKeepTheInvariantsAndTheModel() throws {
        var store = try ChunkStore(capacityBlocks: 40, blockTokens: 4, maxVariantsPerChunk: 2)
        var rng = SplitMix64(seed: 42)
        /// Model: live variants by id, with their (chunk, context, tokens), and who holds them.
        var live: [ChunkVariantID: (chunk: UInt64, context: UInt64, tokens: Int)] = [:]
        var held: [ChunkVariantID: Int] = [:]
        var memory: [BlockID: ChunkVariantID] = [:]
        for step in 0 ..< 3000 {
            let op = rng.next() % 10
            let c = rng.next() % 12, x = rng.next() % 3
            switch op {
            case 0 ..< 4:
                let tokens = Int(rng.next() % 30) + 1
                let existing = live.first { $0.value.chunk == c && $0.value.context == x }
                let before = store.count
                do {
                    let n = existing?.value.tokens ?? tokens
                    let (id, blocks) = try store.insert(key(c), tokens: n, computedAt: Int(c) * 7, context: context(x),
                                                        tokenImpact: impacts(c, x, n))
                    if let existing {
                        #expect(id == existing.key && store.count == before, "step \(step): same chunk and context")
                    } else {
                        // Variants the store dropped to make room are gone from the model too.
                        for (v, _) in live where store.variant(v) == nil {
                            #expect(held[v, default: 0] == 0, "step \(step): a held variant was evicted")
                            live[v] = nil
                        }
                        live[id] = (c, x, tokens)
                        #expect(blocks.count == (tokens + 3) / 4)
                        for b in blocks { memory[b] = id }
                    }
                } catch let e {
                    guard case .insufficientBlocks = e else { if case .invalidArgument = e { break }; throw e }
                    #expect(store.count == before)
                }
            case 4 ..< 7:
                let id = store.lookup(key(c), context: context(x))
                let candidates = live.filter { $0.value.chunk == c }
                #expect((id == nil) == candidates.isEmpty, "step \(step): lookup")
                if let id, let exact = candidates.first(where: { $0.value.context == x }) { #expect(id == exact.key) }
                if let id {
                    for b in try store.blocks(of: id) { #expect(memory[b] == id, "step \(step): block \(b) read back another variant") }
                }
            case 7:
                if let (id, _) = live.randomElement(using: &rng) {
                    if held[id, default: 0] > 0 {
                        #expect(throws: ChunkError.variantHeld(id)) { try store.remove(id) }
                    } else {
                        try store.remove(id)
                        live[id] = nil
                        #expect(throws: ChunkError.unknownVariant(id)) { try store.remove(id) }
                    }
                }
            case 8:
                if let (id, _) = live.randomElement(using: &rng), held.count < 3 || held[id] != nil {
                    try store.acquire(id); held[id, default: 0] += 1
                }
            default:
                if let (id, n) = held.randomElement(using: &rng) {
                    try store.release(id)
                    held[id] = n == 1 ? nil : n - 1
                }
            }
            try store.validate()
            #expect(store.count == live.count, "step \(step): count")
            for (id, v) in live {
                let got = try #require(store.variant(id))
                #expect(got.tokens == v.tokens && got.context == context(v.context) && got.chunk == key(v.chunk))
                #expect(try store.tokenImpact(of: id) == impacts(v.chunk, v.context, v.tokens), "step \(step): token impacts")
            }
        }
        #expect(store.evictedVariants > 0)
    }

    @Test func prefersTheSameContextThenTheLeastContextDependentVariant() throws {
        var store = try ChunkStore(capacityBlocks: 16, blockTokens: 16, maxVariantsPerChunk: 3)
        let (a, _) = try store.insert(key(1), tokens: 20, computedAt: 0, context: context(0), contextImpact: 0.4)
        let (b, _) = try store.insert(key(1), tokens: 20, computedAt: 50, context: context(1), contextImpact: 0.1)
        let (c, _) = try store.insert(key(1), tokens: 20, computedAt: 90, context: context(2))
        #expect(store.lookup(key(1), context: context(0)) == a)
        #expect(store.lookup(key(1), context: context(2)) == c)
        #expect(store.lookup(key(1), context: context(9)) == b)
        #expect(store.lookup(key(1)) == b)
        #expect(store.lookup(key(2)) == nil)
        #expect(store.variant(b)?.hits == 2)
        // A fourth variant displaces the least recently used of the three (a).
        let (d, _) = try store.insert(key(1), tokens: 20, computedAt: 10, context: context(3))
        #expect(store.variant(a) == nil && store.variant(d) != nil && store.count == 3)
        #expect(throws: ChunkError.unknownVariant(a)) { try store.blocks(of: a) }
        #expect(throws: ChunkError.self) { try store.insert(key(5), tokens: 0, computedAt: 0, context: context(0)) }
        #expect(throws: ChunkError.insufficientBlocks(needed: 17, evictable: 16)) {
            try store.insert(key(6), tokens: 17 * 16, computedAt: 0, context: context(0))
        }
        try store.validate()
    }
}
