import Testing
@testable import KVCache

/// Seeded random operation sequences against a simple reference: a fake engine writes each token's
/// id into its KV slot through the block table, so any block handed out twice, evicted while held,
/// shared without copy-on-write, or served as a wrong prefix hit shows up as a wrong token read back.
/// After every step `validate()` checks all invariants and the event stream must agree with lookups.
/// A twin manager without events but with an eviction observer (so its allocations evict block by block,
/// where the recording one evicts a batch at a time, writing the victims' keys into its event log) gets
/// the same calls and must answer the same, hand out the same blocks, keep its own invariants, and evict
/// exactly the keys, in the order, that the recording one's removal events name.
struct ModelBasedTests {

    /// The reference's view of one sequence: its tokens and how many are computed.
    struct ModelSequence { var tokens: [UInt32]; var hitTokens = 0; var computed = 0; var pinned = false }

    /// The keys an observed manager evicts, in order.
    final class EvictedKeys: BlockEvictionObserver {
        var keys: [BlockKey] = []
        func willEvict(block: BlockID, key: BlockKey) { keys.append(key) }
    }

    final class Harness {
        let m: KVCacheManager
        /// `m` without events, called in lock-step; observed by `twinEvicted`.
        let twin: KVCacheManager
        let twinEvicted = EvictedKeys()
        let B: Int
        var rng: SplitMix64
        var content: [[UInt32]]
        var live: [Int64: ModelSequence] = [:]
        var cachedKeys = Set<BlockKey>()
        var nextID: Int64 = 1
        let templates: [[UInt32]]
        var hits = 0, evictions = 0, copies = 0, refusals = 0

        init(seed: UInt64, capacity: Int, blockTokens: Int, policy: String) throws {
            B = blockTokens
            let cost = try RecomputeCost(secondsPerToken: 2.706e-5, secondsPerContextPair: 1.325e-9)
            let config = KVCacheConfig(blockTokens: blockTokens, capacityBlocks: capacity, recordEvents: true, recomputeCost: cost)
            m = try KVCacheManager(config, policy: try ModelBasedTests.policy(policy, capacity: capacity, cost: cost))
            var silent = config
            silent.recordEvents = false
            twin = try KVCacheManager(silent, policy: try ModelBasedTests.policy(policy, capacity: capacity, cost: cost))
            twin.evictionObserver = twinEvicted
            rng = SplitMix64(seed: seed)
            content = Array(repeating: Array(repeating: UInt32.max, count: blockTokens), count: capacity)
            var r = SplitMix64(seed: seed ^ 0xABCD)
            templates = (0 ..< 4).map { _ in (0 ..< Int.random(in: 0 ... 3 * blockTokens, using: &r)).map { _ in UInt32.random(in: 0 ..< 50, using: &r) } }
        }

        func drainEvents() {
            var events: [KVEvent] = []
            m.drainEvents(into: &events)
            var removed: [BlockKey] = []
            defer {
                #expect(removed == twinEvicted.keys, "the removal events name other keys than the block-by-block evictions")
                twinEvicted.keys.removeAll()
            }
            for e in events {
                switch e {
                case .blockStored(let keys, _, _, let tier, _):
                    #expect(tier == .device)
                    for k in keys { #expect(cachedKeys.insert(k).inserted, "stored twice") }
                case .blockRemoved(let keys, _):
                    for k in keys { #expect(cachedKeys.remove(k) != nil, "removed an unknown key") }
                    removed += keys
                    evictions += keys.count
                case .allBlocksCleared:
                    cachedKeys.removeAll()
                }
            }
        }

        func keys(of tokens: [UInt32]) -> [BlockKey] {
            var out: [BlockKey] = []
            tokens.withUnsafeBufferPointer { m.hasher.appendKeys(of: $0, parent: BlockHasher.rootKey(), to: &out) }
            return out
        }

        func add() throws {
            let id = nextID; nextID += 1
            let prompt = templates.randomElement(using: &rng)! + (0 ..< Int.random(in: 1 ... 2 * B, using: &rng)).map { _ in UInt32.random(in: 0 ..< 50, using: &rng) }
            try m.addSequence(SequenceID(id), prompt: prompt)
            try twin.addSequence(SequenceID(id), prompt: prompt)
            let hit = try m.lookup(SequenceID(id))
            #expect(try twin.lookup(SequenceID(id)) == hit)
            // Expected: leading prompt keys the event stream says are cached, never the last token.
            let ks = keys(of: prompt)
            var expected = 0
            while expected < min(ks.count, (prompt.count - 1) / B) && cachedKeys.contains(ks[expected]) { expected += 1 }
            #expect(hit.cachedBlocks == expected)
            hits += hit.cachedBlocks
            live[id] = ModelSequence(tokens: prompt, hitTokens: hit.cachedTokens)
        }

        func step(_ id: Int64) throws {
            var s = live[id]!
            let seq = SequenceID(id)
            if s.computed == s.tokens.count {  // decode: sample one token
                let t = UInt32.random(in: 0 ..< 50, using: &rng)
                try m.append(seq, tokens: [t])
                try twin.append(seq, tokens: [t])
                s.tokens.append(t)
                live[id] = s
                return
            }
            let before = (m.stats, try m.blockTable(seq))
            // Before the first allocate, the manager pins the hit (or less, if some of it was evicted since).
            let remaining = s.tokens.count - (s.pinned ? s.computed : s.hitTokens)
            let n = Int.random(in: 1 ... remaining, using: &rng)
            let lookahead = Int.random(in: 0 ... 2, using: &rng)
            let outcome = try m.allocate(seq, newTokens: n, lookahead: lookahead)
            #expect(try twin.allocate(seq, newTokens: n, lookahead: lookahead) == outcome)
            guard case .allocated = outcome else {
                refusals += 1
                let after = try m.blockTable(seq)
                #expect(m.stats == before.0 && after == before.1, "refusal changed state")
                return
            }
            s.pinned = true
            s.computed = try m.computedTokens(seq)
            var copyList: [(src: BlockID, dst: BlockID)] = []
            m.drainCopies(into: &copyList)
            var twinCopies: [(src: BlockID, dst: BlockID)] = []
            twin.drainCopies(into: &twinCopies)
            #expect(twinCopies.map(\.src) == copyList.map(\.src) && twinCopies.map(\.dst) == copyList.map(\.dst))
            for c in copyList { content[Int(c.dst)] = content[Int(c.src)]; copies += 1 }
            let table = try m.blockTable(seq)
            let todo = min(n, s.tokens.count - s.computed)
            for pos in s.computed ..< s.computed + todo {
                content[Int(table[pos / B])][pos % B] = s.tokens[pos]
            }
            try m.commit(seq, computedTokens: todo)
            try twin.commit(seq, computedTokens: todo)
            s.computed += todo
            live[id] = s
        }

        func fork(_ id: Int64) throws {
            let child = nextID; nextID += 1
            try m.fork(SequenceID(id), into: SequenceID(child))
            try twin.fork(SequenceID(id), into: SequenceID(child))
            live[child] = live[id]
        }

        func free(_ id: Int64) throws {
            try m.free(SequenceID(id))
            try twin.free(SequenceID(id))
            live[id] = nil
        }

        /// Every computed token of every live sequence reads back through its block table.
        func verifyContent() throws {
            for (id, s) in live where s.pinned {
                let table = try m.blockTable(SequenceID(id))
                #expect(try m.computedTokens(SequenceID(id)) == s.computed)
                for pos in 0 ..< s.computed where content[Int(table[pos / B])][pos % B] != s.tokens[pos] {
                    Issue.record("seq \(id) reads a wrong token at \(pos)")
                    return
                }
            }
        }

        func run(steps: Int) throws {
            for _ in 0 ..< steps {
                let roll = Int.random(in: 0 ..< 100, using: &rng)
                let ids = live.keys.sorted()
                switch roll {
                case 0 ..< 20 where live.count < 12: try add()
                case 0 ..< 70 where !ids.isEmpty: try step(ids.randomElement(using: &rng)!)
                case 70 ..< 76 where !ids.isEmpty:
                    let id = ids.randomElement(using: &rng)!
                    if live[id]!.pinned { try fork(id) }
                case 76 ..< 97 where !ids.isEmpty: try free(ids.randomElement(using: &rng)!)
                case 97:
                    if m.stats.usedBlocks == 0 {
                        try m.reset()
                        try twin.reset()
                    } else {
                        #expect(throws: KVCacheError.blocksInUse(m.stats.usedBlocks)) { try m.reset() }
                    }
                case 98:
                    let ghost = SequenceID(-7)
                    #expect(throws: KVCacheError.unknownSequence(ghost)) { try m.free(ghost) }
                    #expect(throws: KVCacheError.unknownSequence(ghost)) { try m.fork(ghost, into: SequenceID(-8)) }
                default:
                    if let id = ids.first {
                        #expect(throws: KVCacheError.duplicateSequence(SequenceID(id))) {
                            try m.addSequence(SequenceID(id), prompt: [1])
                        }
                    }
                }
                drainEvents()
                try m.validate()
                try twin.validate()
                try verifyContent()
                #expect(twin.stats == m.stats)
                for id in live.keys { #expect(try twin.blockTable(SequenceID(id)) == m.blockTable(SequenceID(id))) }
                #expect(m.stats.cachedBlocks == cachedKeys.count)
            }
        }
    }

    /// Every policy of the core by name: the built-in kinds and those built with options.
    static func policy(_ name: String, capacity: Int, cost: RecomputeCost) throws -> any EvictionPolicy {
        switch name {
        case "probation": return ProbationPolicy(capacity: capacity)
        case "pgdsf-probation": return PGDSFPolicy(capacity: capacity, cost: cost, firstUseWeight: 0.25)
        case "marking": return PredictiveMarkingPolicy(capacity: capacity)
        case "marking-noise": return PredictiveMarkingPolicy(capacity: capacity, noise: true)
        default: return try #require(EvictionPolicyKind(rawValue: name)).make(capacity: capacity, recomputeCost: cost)
        }
    }

    @Test(arguments: [(1, "lru"), (2, "lru"), (3, "fifo"), (4, "lfu"), (5, "lru"), (6, "pgdsf"), (7, "pgdsf"),
                      (8, "probation"), (9, "probation"), (10, "pgdsf-probation"), (11, "marking"), (12, "marking"),
                      (13, "marking-noise")])
    func randomOperationsKeepEveryInvariant(seed: Int, policy: String) throws {
        let h = try Harness(seed: UInt64(seed), capacity: 24, blockTokens: seed % 2 == 1 && seed > 4 ? 1 : 4, policy: policy)
        try h.run(steps: 3000)
        // The run must have exercised the interesting paths.
        #expect(h.hits > 0 && h.evictions > 0 && (h.copies > 0 || h.B == 1) && h.refusals > 0,
                "hits \(h.hits) evictions \(h.evictions) copies \(h.copies) refusals \(h.refusals)")
    }
}
