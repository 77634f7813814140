import KVCache
import Testing

/// Model-based: over random serving sequences, the events alone rebuild the device cache (keys and
/// parents), and every stored block's token ids hash, chained from its parent, to its key.
@Suite struct StoredTokensTests {
    @Test(arguments: [1, 2, 3, 4] as [UInt64])
    func eventsRebuildTheCacheAndTokensGiveTheKeys(seed: UInt64) throws {
        let B = 4
        let m = try KVCacheManager(KVCacheConfig(blockTokens: B, capacityBlocks: 24, recordEvents: true))
        var rng = SplitMix64(seed: seed)
        let prefixes: [[UInt32]] = (0 ..< 4).map { _ in (0 ..< Int.random(in: 0 ... 3 * B, using: &rng)).map { _ in UInt32.random(in: 0 ..< 30, using: &rng) } }
        var live: [SequenceID] = []
        var next: Int64 = 0
        var rebuilt: [BlockKey: BlockKey?] = [:]
        var events: [KVEvent] = []
        var storedWithTokens = 0
        for _ in 0 ..< 300 {
            switch Int.random(in: 0 ..< 100, using: &rng) {
            case 0 ..< 40:
                let id = SequenceID(next); next += 1
                let suffix = (0 ..< Int.random(in: 1 ... 2 * B, using: &rng)).map { _ in UInt32.random(in: 0 ..< 30, using: &rng) }
                try m.addSequence(id, prompt: prefixes.randomElement(using: &rng)! + suffix)
                let todo = try m.tokenCount(id) - m.lookup(id).cachedTokens
                if case .allocated = try m.allocate(id, newTokens: todo) {
                    try m.commit(id, computedTokens: todo)
                    live.append(id)
                } else { try m.free(id) }
            case 40 ..< 65:
                guard let id = live.randomElement(using: &rng) else { continue }
                try m.append(id, tokens: [UInt32.random(in: 0 ..< 30, using: &rng)])
                if case .allocated = try m.allocate(id, newTokens: 1) { try m.commit(id, computedTokens: 1) }
            case 65 ..< 70:
                guard let p = live.randomElement(using: &rng), try m.computedTokens(p) == m.tokenCount(p) else { continue }
                let c = SequenceID(next); next += 1
                try m.fork(p, into: c)
                live.append(c)
            case 70 ..< 98:
                guard !live.isEmpty else { continue }
                try m.free(live.remove(at: Int.random(in: 0 ..< live.count, using: &rng)))
            default:
                for id in live { try m.free(id) }
                live.removeAll()
                try m.reset()
            }
            m.drainEvents(into: &events)
            for e in events {
                switch e {
                case .blockStored(let keys, let parent, let blockTokens, let tier, let tokens):
                    #expect(tier == .device && blockTokens == B)
                    #expect(tokens.count == keys.count * B, "stored blocks without their token ids")
                    var again: [BlockKey] = []
                    tokens.withUnsafeBufferPointer {
                        m.hasher.appendKeys(of: $0, parent: parent ?? BlockHasher.rootKey(), to: &again)
                    }
                    #expect(again == keys, "the token ids do not give the keys")
                    var p = parent
                    for k in keys {
                        #expect(rebuilt.updateValue(p, forKey: k) == nil, "stored twice")
                        p = k
                    }
                    storedWithTokens += keys.count
                case .blockRemoved(let keys, _):
                    for k in keys { #expect(rebuilt.removeValue(forKey: k) != nil, "removed a block never stored") }
                case .allBlocksCleared:
                    rebuilt.removeAll()
                }
            }
            events.removeAll()
        }
        var cached: [BlockKey: BlockKey?] = [:]
        for b in 0 ..< BlockID(m.capacityBlocks) where m.index.isCached(b) {
            let p = m.index.parent(of: b)
            cached[m.index.key(of: b)] = p == PrefixIndex.noParent ? nil : m.index.key(of: p)
        }
        #expect(rebuilt == cached)
        #expect(storedWithTokens > 0)
        try m.validate()
    }

    /// A sequence added by keys has no token ids: its stored events carry none (and say so by being empty).
    @Test func keyedSequencesStoreNoTokens() throws {
        let m = try KVCacheManager(KVCacheConfig(blockTokens: 4, capacityBlocks: 8, recordEvents: true))
        var keys: [BlockKey] = []
        Array<UInt32>(0 ..< 8).withUnsafeBufferPointer { m.hasher.appendKeys(of: $0, parent: BlockHasher.rootKey(), to: &keys) }
        try m.addSequence(SequenceID(1), promptKeys: keys, promptTokens: 9)
        _ = try m.allocate(SequenceID(1), newTokens: 9)
        try m.commit(SequenceID(1), computedTokens: 8)
        var events: [KVEvent] = []
        m.drainEvents(into: &events)
        #expect(events == [.blockStored(keys: keys, parent: nil, blockTokens: 4, tier: .device, tokens: [])])
    }
}
