import Testing
@testable import KVCache

struct KVCacheManagerTests {
    func manager(_ capacity: Int, events: Bool = false, policy: EvictionPolicyKind = .lru) throws -> KVCacheManager {
        try KVCacheManager(KVCacheConfig(blockTokens: 4, capacityBlocks: capacity, policy: policy, recordEvents: events,
                                         recomputeCost: try RecomputeCost(secondsPerToken: 2.706e-5, secondsPerContextPair: 1.325e-9)))
    }

    /// Runs a whole prefill of a sequence: lookup, allocate, commit.
    @discardableResult
    func prefill(_ m: KVCacheManager, _ id: Int64, _ prompt: [UInt32], salt: String = "") throws -> PrefixHit {
        let seq = SequenceID(id)
        try m.addSequence(seq, prompt: prompt, salt: salt)
        let hit = try m.lookup(seq)
        let todo = prompt.count - hit.cachedTokens
        #expect(try m.allocate(seq, newTokens: todo) == .allocated(newBlocks: (prompt.count + 3) / 4 - hit.cachedBlocks))
        try m.commit(seq, computedTokens: todo)
        try m.validate()
        return hit
    }

    @Test func prefixHitSkipsTheLastPromptToken() throws {
        let m = try manager(16)
        try prefill(m, 1, Array(0 ..< 8))
        try m.free(SequenceID(1))
        // Same 8 tokens: the second block holds the last token, so only one block counts.
        #expect(try prefill(m, 2, Array(0 ..< 8)) == PrefixHit(cachedBlocks: 1, cachedTokens: 4))
        // A longer prompt reuses both.
        #expect(try prefill(m, 3, Array(0 ..< 9)) == PrefixHit(cachedBlocks: 2, cachedTokens: 8))
        // Different salt: no sharing.
        #expect(try prefill(m, 4, Array(0 ..< 9), salt: "tenant-b") == PrefixHit(cachedBlocks: 0, cachedTokens: 0))
        let s = m.stats
        #expect(s.lookups == 4 && s.hitTokens == 12 && s.queryTokens == 34)
        #expect(s.deduplicatedBlocks == 1)  // sequence 2 recomputed block 1 and adopted the cached copy
    }

    /// A sequence's keys chain from the root of the cache's namespace and the sequence's adapter and
    /// salt, whichever of them are empty (the manager hashes the namespace's plain root once).
    @Test func keysChainFromTheNamespaceAdapterAndSaltRoot() throws {
        let m = try KVCacheManager(KVCacheConfig(blockTokens: 4, capacityBlocks: 8, namespace: "model-a"))
        let prompt: [UInt32] = Array(0 ..< 9)
        for (i, (lora, salt)) in [("", ""), ("", "tenant"), ("adapter", ""), ("adapter", "tenant"), ("", "")].enumerated() {
            let id = SequenceID(Int64(i))
            try m.addSequence(id, prompt: prompt, salt: salt, lora: lora)
            var expected: [BlockKey] = []
            prompt.withUnsafeBufferPointer {
                m.hasher.appendKeys(of: UnsafeBufferPointer(rebasing: $0[..<8]),
                                    parent: BlockHasher.rootKey(namespace: "model-a", lora: lora, salt: salt), to: &expected)
            }
            #expect(try m.promptKeys(id) == expected, "lora \(lora), salt \(salt)")
            try m.free(id)
        }
    }

    @Test func insufficientBlocksChangesNothing() throws {
        let m = try manager(4)
        try prefill(m, 1, Array(0 ..< 12))
        let seq = SequenceID(2)
        try m.addSequence(seq, prompt: Array(100 ..< 112))
        _ = try m.lookup(seq)
        let before = m.stats
        #expect(try m.allocate(seq, newTokens: 12) == .insufficientBlocks(needed: 3, available: 1))
        #expect(m.stats == before)
        #expect(try m.blockTable(seq).isEmpty)
        try m.validate()
    }

    @Test func misuseIsTypedAndHarmless() throws {
        let m = try manager(8)
        let a = SequenceID(1)
        #expect(throws: KVCacheError.unknownSequence(a)) { try m.free(a) }
        #expect(throws: KVCacheError.unknownSequence(a)) { _ = try m.lookup(a) }
        try m.addSequence(a, prompt: [1, 2, 3])
        #expect(throws: KVCacheError.duplicateSequence(a)) { try m.addSequence(a, prompt: [1]) }
        #expect(throws: KVCacheError.invalidArgument("empty prompt")) { try m.addSequence(SequenceID(2), prompt: []) }
        #expect(throws: KVCacheError.self) { _ = try m.allocate(a, newTokens: 4) }  // only 3 tokens known
        #expect(throws: KVCacheError.self) { try m.commit(a, computedTokens: 1) }  // nothing allocated
        _ = try m.allocate(a, newTokens: 3)
        try m.free(a)
        #expect(throws: KVCacheError.unknownSequence(a)) { try m.free(a) }  // double free of a sequence
        #expect(throws: KVCacheError.self) { try KVCacheManager(KVCacheConfig(blockTokens: 0, capacityBlocks: 4)) }
        #expect(throws: KVCacheError.self) { try KVCacheManager(KVCacheConfig(blockTokens: 1025, capacityBlocks: 4)) }
        // PGDSF prices recomputation and the core knows no model: without the caller's cost it is refused.
        #expect(throws: KVCacheError.self) { try KVCacheManager(KVCacheConfig(capacityBlocks: 4, policy: .pgdsf)) }
        try m.validate()
        #expect(m.freeBlockCount == 8)
    }

    @Test func evictionTakesUnheldLeavesDeepestFirst() throws {
        let m = try manager(6, events: true)
        try prefill(m, 1, Array(0 ..< 12))  // blocks A B C (3 full)
        try m.free(SequenceID(1))
        try prefill(m, 2, Array(50 ..< 62))  // D E F
        try m.free(SequenceID(2))
        var events: [KVEvent] = []
        m.drainEvents(into: &events)
        #expect(events.count == 2)
        // A new 8-token prompt needs 2 blocks: evicts the least recent chain's tail: C then B.
        try prefill(m, 3, Array(200 ..< 208))
        events.removeAll()
        m.drainEvents(into: &events)
        // One allocate call: one removal event with both keys, in eviction order (then the commit's store).
        guard events.count == 2, case .blockRemoved(let removed, .device) = events[0] else {
            Issue.record("expected one removal event, got \(events)"); return
        }
        var chain: [BlockKey] = []
        Array<UInt32>(0 ..< 12).withUnsafeBufferPointer { m.hasher.appendKeys(of: $0, parent: BlockHasher.rootKey(), to: &chain) }
        #expect(removed == [chain[2], chain[1]])
        #expect(m.matchLength(chain) == 1)  // the ancestor stays matchable
        #expect(m.stats.evictedBlocks == 2)
    }

    @Test func forkSharesFullBlocksAndCopiesThePartialOneOnWrite() throws {
        let m = try manager(8)
        let p = SequenceID(1), c = SequenceID(2)
        try prefill(m, 1, Array(0 ..< 6))  // one full block, one partial
        try m.fork(p, into: c)
        #expect(try m.blockTable(c) == m.blockTable(p))
        #expect(m.pool.refCount(try m.blockTable(p)[1]) == 2)
        try m.append(c, tokens: [99])
        #expect(try m.allocate(c, newTokens: 1) == .allocated(newBlocks: 1))  // the copy
        var copies: [(src: BlockID, dst: BlockID)] = []
        m.drainCopies(into: &copies)
        let (tp, tc) = (try m.blockTable(p), try m.blockTable(c))
        #expect(copies.count == 1 && copies[0].src == tp[1] && copies[0].dst == tc[1])
        try m.append(p, tokens: [42])
        #expect(try m.allocate(p, newTokens: 1) == .allocated(newBlocks: 0))  // now sole owner: no copy
        #expect(try m.blockTable(p)[0] == tc[0])
        try m.validate()
        try m.free(p); try m.free(c)
        try m.validate()
    }

    @Test func resetNeedsNoHoldersAndClearsEverything() throws {
        let m = try manager(8, events: true)
        try prefill(m, 1, Array(0 ..< 8))
        #expect(throws: KVCacheError.blocksInUse(2)) { try m.reset() }
        try m.free(SequenceID(1))
        try m.reset()
        #expect(m.stats.cachedBlocks == 0 && m.freeBlockCount == 8)
        var events: [KVEvent] = []
        m.drainEvents(into: &events)
        #expect(events.last == .allBlocksCleared)
        try m.validate()
    }

    @Test func keyOnlySequencesShareWithEachOther() throws {
        let m = try manager(8)
        let keys = (1 ... 3).map { BlockKey(lo: UInt64($0), hi: 9) }
        try m.addSequence(SequenceID(1), promptKeys: keys, promptTokens: 13)
        #expect(try m.lookup(SequenceID(1)).cachedBlocks == 0)
        _ = try m.allocate(SequenceID(1), newTokens: 12)
        try m.commit(SequenceID(1), computedTokens: 12)
        try m.append(SequenceID(1), count: 5)
        try m.free(SequenceID(1))
        try m.addSequence(SequenceID(2), promptKeys: keys, promptTokens: 13)
        #expect(try m.lookup(SequenceID(2)).cachedBlocks == 3)
        #expect(m.matchLength(keys) == 3)
        #expect(throws: KVCacheError.self) { try m.addSequence(SequenceID(3), promptKeys: keys, promptTokens: 11) }
        try m.validate()
    }

    @Test func policiesOrderVictims() throws {
        for kind in EvictionPolicyKind.allCases {
            let m = try manager(4, policy: kind)
            try prefill(m, 1, Array(0 ..< 5)); try m.free(SequenceID(1))     // A (+ partial freed)
            try prefill(m, 2, Array(10 ..< 15)); try m.free(SequenceID(2))   // B
            try prefill(m, 3, Array(0 ..< 5)); try m.free(SequenceID(3))     // hit A again
            try prefill(m, 4, Array(20 ..< 32)); try m.free(SequenceID(4))   // needs 3 blocks: one eviction
            #expect(m.stats.evictedBlocks == 1)
            var keysA: [BlockKey] = []
            Array<UInt32>(0 ..< 4).withUnsafeBufferPointer { m.hasher.appendKeys(of: $0, parent: BlockHasher.rootKey(), to: &keysA) }
            // LRU, LFU, PGDSF and the probation policies keep the re-used block A; FIFO evicts it, being the
            // oldest insert, and so does marking: no publication came between A's and B's last use, so
            // its recency ties them (and its untrained predictor too) and the lower block id goes first.
            #expect((m.matchLength(keysA) == 1) == (kind != .fifo && kind != .marking), "\(kind)")
            try m.validate()
        }
    }

    /// The index keeps its records in buffers it writes in place; a copy of it must still be a value:
    /// what the manager does afterwards leaves the copy as it was, and mutating the copy leaves the
    /// manager's index alone.
    @Test(arguments: [EvictionPolicyKind.lru, .lfu])
    func aCopyOfTheIndexIsASnapshot(kind: EvictionPolicyKind) throws {
        let cost = try RecomputeCost(secondsPerToken: 2.706e-5, secondsPerContextPair: 1.325e-9)
        let m = try KVCacheManager(KVCacheConfig(blockTokens: 4, capacityBlocks: 8, policy: kind, recomputeCost: cost))
        func serve(_ id: Int64, _ prompt: [UInt32]) throws {
            try m.addSequence(SequenceID(id), prompt: prompt)
            let hit = try m.lookup(SequenceID(id))
            _ = try m.allocate(SequenceID(id), newTokens: prompt.count - hit.cachedTokens)
            try m.commit(SequenceID(id), computedTokens: prompt.count - hit.cachedTokens)
            try m.free(SequenceID(id))
        }
        try serve(1, Array(0 ..< 17))  // 4 full blocks cached
        let snapshot = m.index
        let keys = (0 ..< 8).map { snapshot.key(of: BlockID($0)) }
        #expect(snapshot.count == 4)
        try serve(2, Array(100 ..< 132))  // 8 full blocks: evicts the first prompt's blocks
        #expect(m.stats.evictedBlocks > 0)
        #expect(m.index.count == 8)
        #expect(snapshot.count == 4 && (0 ..< 8).map { snapshot.key(of: BlockID($0)) } == keys)
        try snapshot.validate(isHeld: { _ in false })

        var copy = m.index
        while copy.evict(clock: 1, tokens: 4) != nil {}
        #expect(copy.count == 0 && m.index.count == 8)
        try copy.validate(isHeld: { _ in false })
        try m.validate()
    }
}
