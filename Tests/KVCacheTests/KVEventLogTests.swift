import KVCache
import Testing

/// Model-based: a `KVEventLog` fed random recordings (stored runs with their keys or keyed by their
/// token ids alone) gives back exactly the `KVEvent`s a plain array records for the same steps, through
/// any mix of reads, empties and `take` (into an empty log or after other events), with its invariants
/// holding after every step.
@Suite struct KVEventLogTests {
    static func key(_ rng: inout SplitMix64) -> BlockKey { BlockKey(lo: rng.next(), hi: rng.next()) }

    /// `ids` handed to the log in one of the ways a recorder can: none when empty, else shared (a range
    /// of a longer array, as a run inside a prompt), or copied in two pieces split at random.
    static func withStored(_ ids: [UInt32], _ rng: inout SplitMix64, _ body: (KVEventLog.StoredTokens) -> Void) {
        guard !ids.isEmpty else { return body(.none) }
        guard Bool.random(using: &rng) else {
            let before = Int.random(in: 0 ... 3, using: &rng), after = Int.random(in: 0 ... 3, using: &rng)
            let prompt = [UInt32](repeating: 0, count: before) + ids + [UInt32](repeating: 0, count: after)
            return body(.shared(prompt, range: before ..< before + ids.count))
        }
        let cut = Int.random(in: 0 ... ids.count, using: &rng)
        ids.withUnsafeBufferPointer { b in
            body(.copied(UnsafeBufferPointer(rebasing: b[..<cut]), UnsafeBufferPointer(rebasing: b[cut...])))
        }
    }

    @Test(arguments: [1, 2, 3, 4, 5] as [UInt64])
    func theLogGivesBackWhatWasRecorded(seed: UInt64) throws {
        var rng = SplitMix64(seed: seed)
        var log = KVEventLog(reservingKeys: 8, events: 2)   // recording side (room reserved; it still grows past it)
        var drained = KVEventLog()   // what a reader took, not yet read
        var model: [KVEvent] = []    // every event recorded, not yet read
        var modelTaken = 0           // of `model`, the leading events already in `drained`
        var pending: [BlockKey] = []
        for _ in 0 ..< 2_000 {
            switch Int.random(in: 0 ..< 100, using: &rng) {
            case 0 ..< 30:
                let k = Self.key(&rng)
                log.appendKey(k)
                pending.append(k)
            case 30 ..< 35:   // a run written in place, possibly shorter than the room asked for
                let room = Int.random(in: 0 ... 5, using: &rng)
                let run = (0 ..< Int.random(in: 0 ... room, using: &rng)).map { _ in Self.key(&rng) }
                log.appendKeys(count: room) { buffer in
                    #expect(buffer.count == room)
                    for (i, k) in run.enumerated() { buffer[i] = k }
                    return run.count
                }
                pending.append(contentsOf: run)
            case 35 ..< 38:   // a stored run recorded by its token ids alone: the reader chains their hashes
                guard pending.isEmpty else { continue }
                let blocks = Int.random(in: 0 ... 4, using: &rng)
                let ids = (0 ..< blocks * 2).map { _ in UInt32.random(in: 0 ..< 50_000, using: &rng) }
                let hasParent = Bool.random(using: &rng), chainParent = Self.key(&rng)
                let tier = Tier.allCases.randomElement(using: &rng)!
                var keys: [BlockKey] = []
                ids.withUnsafeBufferPointer { BlockHasher(blockTokens: 2).appendKeys(of: $0, parent: chainParent, to: &keys) }
                if blocks > 0 {
                    Self.withStored(ids, &rng) {
                        log.appendStored(blocks: blocks, chainedFrom: chainParent, hasParent: hasParent, blockTokens: 2,
                                         tier: tier, tokens: $0)
                    }
                    model.append(.blockStored(keys: keys, parent: hasParent ? chainParent : nil, blockTokens: 2, tier: tier,
                                              tokens: ids))
                }
            case 38 ..< 40:   // a stored run at hand, in one step
                guard pending.isEmpty else { continue }
                let run = (0 ..< Int.random(in: 0 ... 4, using: &rng)).map { _ in Self.key(&rng) }
                let parent: BlockKey? = Bool.random(using: &rng) ? Self.key(&rng) : nil
                let tier = Tier.allCases.randomElement(using: &rng)!
                let ids: [UInt32] = Bool.random(using: &rng) ? (0 ..< run.count * 2).map { UInt32($0) } : []
                run.withUnsafeBufferPointer { k in
                    Self.withStored(ids, &rng) { log.appendStored(keys: k, parent: parent, blockTokens: 2, tier: tier, tokens: $0) }
                }
                if !run.isEmpty { model.append(.blockStored(keys: run, parent: parent, blockTokens: 2, tier: tier, tokens: ids)) }
            case 40 ..< 60:
                let parent: BlockKey? = Bool.random(using: &rng) ? Self.key(&rng) : nil
                let blockTokens = Int.random(in: 1 ... 4, using: &rng)
                let tier = Tier.allCases.randomElement(using: &rng)!
                let ids: [UInt32] = Bool.random(using: &rng)
                    ? (0 ..< pending.count * blockTokens).map { _ in UInt32.random(in: 0 ..< 1000, using: &rng) } : []
                Self.withStored(ids, &rng) { log.closeStored(parent: parent, blockTokens: blockTokens, tier: tier, tokens: $0) }
                if !pending.isEmpty {
                    model.append(.blockStored(keys: pending, parent: parent, blockTokens: blockTokens, tier: tier, tokens: ids))
                }
                pending.removeAll()
            case 60 ..< 75:
                let tier = Tier.allCases.randomElement(using: &rng)!
                log.closeRemoved(tier: tier)
                if !pending.isEmpty { model.append(.blockRemoved(keys: pending, tier: tier)) }
                pending.removeAll()
            case 75 ..< 78:
                guard pending.isEmpty else { continue }
                log.appendCleared()
                model.append(.allBlocksCleared)
            case 78 ..< 90:   // a reader takes the closed events (after those it holds, if any)
                drained.take(from: &log)
                modelTaken = model.count
                #expect(log.isEmpty && log.pendingKeys == pending.count)
            default:          // the reader reads what it took, all of it and a part of it in place
                #expect(drained.events == Array(model[..<modelTaken]))
                let lo = Int.random(in: 0 ... modelTaken, using: &rng), hi = Int.random(in: lo ... modelTaken, using: &rng)
                var part: [KVEvent] = []
                drained.forEach(in: lo ..< hi) { part.append($0.event) }
                #expect(part == Array(model[lo ..< hi]))
                drained.removeAll()
                model.removeFirst(modelTaken)
                modelTaken = 0
            }
            try log.validate()
            try drained.validate()
            #expect(log.pendingKeys == pending.count)
            #expect(log.keyCount >= log.pendingKeys)
            #expect(drained.count + log.count == model.count)
        }
        drained.take(from: &log)
        #expect(drained.events == model)
    }
}
