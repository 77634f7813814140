import CKVCache
import KVCache
import Testing

/// Seeded random operation sequences driven in lock-step through the C header and through the
/// Swift facade built with the same config: every call must return the status the facade's outcome
/// maps to, the same out-parameters, and afterwards the same stats, block tables, token counts,
/// pending copies and events; both pass `validate()` after every step. Invalid calls (unknown ids,
/// negative or excessive counts, lookups after allocate, resets while blocks are held) are mixed
/// in, so error paths are compared too.
struct LockStepTests {
    static let B = 4
    static let capacity = 24

    final class Harness {
        let c: CCache
        let s: KVCacheManager
        var rng: SplitMix64
        var live: [Int64] = []
        var nextID: Int64 = 1
        let templates: [[UInt32]]
        var counts = [String: Int]()

        init(seed: UInt64, policy: EvictionPolicyKind, prefixCaching: Bool) throws {
            let code: Int32 = switch policy {
            case .lru: Int32(truncatingIfNeeded: KVCACHE_EVICTION_LRU.rawValue)
            case .fifo: Int32(truncatingIfNeeded: KVCACHE_EVICTION_FIFO.rawValue)
            case .lfu: Int32(truncatingIfNeeded: KVCACHE_EVICTION_LFU.rawValue)
            case .pgdsf: Int32(truncatingIfNeeded: KVCACHE_EVICTION_PGDSF.rawValue)
            case .probation: Int32(truncatingIfNeeded: KVCACHE_EVICTION_PROBATION.rawValue)
            case .pgdsfProbation: Int32(truncatingIfNeeded: KVCACHE_EVICTION_PGDSF_PROBATION.rawValue)
            case .marking: Int32(truncatingIfNeeded: KVCACHE_EVICTION_MARKING.rawValue)
            }
            c = try CCache(blockTokens: LockStepTests.B, capacity: LockStepTests.capacity, namespace: "model-a",
                           policy: code, prefixCaching: prefixCaching, events: true)
            s = try KVCacheManager(KVCacheConfig(blockTokens: LockStepTests.B, capacityBlocks: LockStepTests.capacity,
                                                 namespace: "model-a", enablePrefixCaching: prefixCaching,
                                                 policy: policy, recordEvents: true,
                                                 recomputeCost: try RecomputeCost(secondsPerToken: 2.706e-5,
                                                                                  secondsPerContextPair: 1.325e-9)))
            rng = SplitMix64(seed: seed)
            var r = SplitMix64(seed: seed ^ 0x5EED)
            templates = (0 ..< 3).map { _ in (0 ..< Int.random(in: 0 ... 12, using: &r)).map { _ in UInt32.random(in: 0 ..< 20, using: &r) } }
        }

        func int(_ range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &rng) }

        /// A live id most of the time, else one that is not live.
        func someID() -> Int64 {
            if live.isEmpty || int(0 ... 19) == 0 { return -int(1 ... 3) == -1 ? nextID + 5 : Int64(-int(1 ... 9)) }
            return live[int(0 ... live.count - 1)]
        }

        func uncomputed(_ id: Int64) -> Int {
            ((try? s.tokenCount(SequenceID(id))) ?? 0) - ((try? s.computedTokens(SequenceID(id))) ?? 0)
        }

        func step() {
            let roll = int(0 ... 99)
            switch roll {
            case 0 ..< 12 where live.count < 10:
                let id = int(0 ... 9) == 0 && !live.isEmpty ? live[0] : nextID  // sometimes a duplicate
                let prompt = templates[int(0 ... 2)] + (0 ..< int(0 ... 9)).map { _ in UInt32(int(0 ... 19)) }
                let salt = ["", "tenant-b"][int(0 ... 1)]
                let want = facadeStatus { () throws(KVCacheError) in try s.addSequence(SequenceID(id), prompt: prompt, salt: salt) }
                check("add", c.add(id, prompt, salt: salt), want)
                if want == 0 { live.append(id); nextID += 1 }
            case 12 ..< 15 where live.count < 10:
                let t = int(0 ... 2)
                let keys = (0 ..< int(0 ... 3)).map { BlockKey(lo: UInt64(t * 10 + $0 + 1), hi: 99) }
                let tokens = Int64(keys.count * LockStepTests.B + int(-1 ... 3))
                let want = facadeStatus { () throws(KVCacheError) in try s.addSequence(SequenceID(nextID), promptKeys: keys, promptTokens: Int(tokens)) }
                check("add_keys", c.addKeys(nextID, keys, promptTokens: tokens), want)
                if want == 0 { live.append(nextID); nextID += 1 }
            case 15 ..< 30:
                let id = someID()
                var hit = PrefixHit(cachedBlocks: -1, cachedTokens: -1)
                let want = facadeStatus { () throws(KVCacheError) in hit = try s.lookup(SequenceID(id)) }
                let (got, h) = c.lookup(id)
                check("lookup", got, want)
                if want == 0 { #expect(h.cached_blocks == Int64(hit.cachedBlocks) && h.cached_tokens == Int64(hit.cachedTokens)) }
            case 30 ..< 55:
                let id = someID()
                let n = int(0 ... 20) == 0 ? -1 : int(0 ... max(0, uncomputed(id) + (int(0 ... 9) == 0 ? 1 : 0)))
                let lookahead = int(0 ... 3) * (int(0 ... 15) == 0 ? 10 : 1)
                var outcome: AllocationOutcome?
                let want = facadeStatus { () throws(KVCacheError) in outcome = try s.allocate(SequenceID(id), newTokens: n, lookahead: lookahead) }
                let (got, a) = c.allocate(id, Int64(n), lookahead: Int64(lookahead))
                switch outcome {
                case .allocated(let blocks)?:
                    check("allocate", got, 0)
                    #expect(a.new_blocks == Int64(blocks))
                case .insufficientBlocks(let needed, let available)?:
                    check("allocate", got, KVCACHE_ERR_INSUFFICIENT_BLOCKS.code)
                    #expect(a.needed_blocks == Int64(needed) && a.available_blocks == Int64(available) && a.new_blocks == 0)
                case nil:
                    check("allocate", got, want)
                    #expect(a.new_blocks == -1, "a refused call wrote its out-parameter")
                }
            case 55 ..< 70:
                let id = someID()
                let table = (try? s.blockTable(SequenceID(id)).count) ?? 0
                let computed = (try? s.computedTokens(SequenceID(id))) ?? 0
                let room = max(0, min(table * LockStepTests.B, (try? s.tokenCount(SequenceID(id))) ?? 0) - computed)
                let n = int(0 ... 15) == 0 ? [-2, room + 1, Int.max][int(0 ... 2)] : int(0 ... room)
                let want = facadeStatus { () throws(KVCacheError) in try s.commit(SequenceID(id), computedTokens: n) }
                check("commit", c.commit(id, Int64(n)), want)
            case 70 ..< 78:
                let id = someID()
                let tokens = (0 ..< int(1 ... 3)).map { _ in UInt32(int(0 ... 19)) }
                let want = facadeStatus { () throws(KVCacheError) in try s.append(SequenceID(id), tokens: tokens) }
                check("append_tokens", c.append(id, tokens), want)
            case 78 ..< 80:
                let id = someID()
                let n = [-1, 0, 1, 3][int(0 ... 3)]
                let want = facadeStatus { () throws(KVCacheError) in try s.append(SequenceID(id), count: n) }
                check("append_count", c.appendCount(id, Int64(n)), want)
            case 80 ..< 85:
                let parent = someID()
                let child = int(0 ... 5) == 0 && !live.isEmpty ? live[0] : nextID
                let want = facadeStatus { () throws(KVCacheError) in try s.fork(SequenceID(parent), into: SequenceID(child)) }
                check("fork", c.fork(parent, child), want)
                if want == 0 { live.append(child); nextID += 1 }
            case 85 ..< 95:
                let id = someID()
                let want = facadeStatus { () throws(KVCacheError) in try s.free(SequenceID(id)) }
                check("free", c.free(id), want)
                if want == 0 { live.removeAll { $0 == id } }
            case 95 ..< 97:
                check("reset", c.reset(), facadeStatus { () throws(KVCacheError) in try s.reset() })
            default:
                var keys: [BlockKey] = []
                for id in live.prefix(2) { keys = (try? s.promptKeys(SequenceID(id))) ?? [] }
                keys.append(BlockKey(lo: 3, hi: 4))
                var n = -1
                let cKeys = keys.map { kvcache_key(lo: $0.lo, hi: $0.hi) }
                #expect(kvcache_match_length(c.handle, cKeys, cKeys.count, &n) == 0)
                #expect(n == s.matchLength(keys))
            }
            // The engine performs copies and a router reads events every step, through both APIs.
            var copies: [(src: BlockID, dst: BlockID)] = []
            s.drainCopies(into: &copies)
            let cCopies = c.drainCopies()
            #expect(cCopies.map(\.src) == copies.map(\.src) && cCopies.map(\.dst) == copies.map(\.dst))
            counts["copies", default: 0] += copies.count
            var events: [KVEvent] = []
            s.drainEvents(into: &events)
            // kvcache_event carries no token ids: compare without them.
            #expect(c.drainEvents() == events.map { e in
                guard case .blockStored(let k, let p, let b, let t, _) = e else { return e }
                return .blockStored(keys: k, parent: p, blockTokens: b, tier: t)
            })
            counts["events", default: 0] += events.count
        }

        func check(_ op: String, _ got: kvcache_status, _ want: kvcache_status,
                   sourceLocation: SourceLocation = #_sourceLocation) {
            #expect(got == want, "\(op): C says \(String(cString: kvcache_status_name(got))), facade \(String(cString: kvcache_status_name(want)))",
                    sourceLocation: sourceLocation)
            counts["\(op) \(got == 0 ? "ok" : String(cString: kvcache_status_name(got)))", default: 0] += 1
        }

        /// Both sides agree on everything observable, and both are internally consistent.
        func compare() throws {
            #expect(c.validate() == 0, "\(lastError)")
            try s.validate()
            #expect(StatsValue(c.stats) == StatsValue(s.stats))
            #expect(c.freeBlockCount == Int64(s.freeBlockCount) && c.sequenceCount == Int64(s.sequenceCount))
            for id in live {
                let seq = SequenceID(id)
                #expect(c.blockTable(id) == (try s.blockTable(seq)))
                #expect(c.computedTokens(id) == Int64(try s.computedTokens(seq)))
                #expect(c.tokenCount(id) == Int64(try s.tokenCount(seq)))
            }
        }
    }

    @Test(arguments: [(UInt64(1), EvictionPolicyKind.lru, true), (2, .fifo, true), (3, .lfu, true), (4, .lru, false),
                      (5, .pgdsf, true), (6, .probation, true), (7, .pgdsfProbation, true), (8, .marking, true)])
    func cABIMatchesTheFacade(seed: UInt64, policy: EvictionPolicyKind, prefixCaching: Bool) throws {
        let h = try Harness(seed: seed, policy: policy, prefixCaching: prefixCaching)
        for _ in 0 ..< 1500 {
            h.step()
            try h.compare()
        }
        // The sequence exercised what it is meant to (successes, refusals and errors of each kind).
        let c = h.counts
        #expect(c["allocate ok", default: 0] > 100 && c["commit ok", default: 0] > 50 && c["fork ok", default: 0] > 5)
        #expect(c["allocate KVCACHE_ERR_INSUFFICIENT_BLOCKS", default: 0] > 0)
        #expect(c["free KVCACHE_ERR_UNKNOWN_SEQUENCE", default: 0] > 0 && c["add KVCACHE_ERR_DUPLICATE_SEQUENCE", default: 0] > 0)
        #expect(c["commit KVCACHE_ERR_INVALID_ARGUMENT", default: 0] > 0 && c["lookup KVCACHE_ERR_INVALID_ARGUMENT", default: 0] > 0)
        if prefixCaching {
            #expect(c["copies", default: 0] > 0 && c["events", default: 0] > 20 && h.s.stats.hitTokens > 0 && h.s.stats.evictedBlocks > 0)
        }
    }
}
