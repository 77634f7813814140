import CKVCache
import KVCache
import KVChunks
import KVPlan
import KVTestSupport
import KVTiers
import Testing

/// The chunk store and prefill plan through the C header (kvcache_chunks_*): the engine contract end to end,
/// every refused call returning its status and changing nothing, and a seeded random lock-step run against
/// `ChunkStore` and `ChunkPrefillPlan` built from the same operations (invalid calls mixed in): same
/// statuses, variants, blocks, plans and counters, both valid after every step.
@Suite("chunk store through the C ABI")
struct ChunksCABITests {
    struct CreateFailed: Error { let status: kvcache_status }

    static let invalid = kvcache_status(truncatingIfNeeded: KVCACHE_ERR_INVALID_ARGUMENT.rawValue)
    static let tooSmall = kvcache_status(truncatingIfNeeded: KVCACHE_ERR_BUFFER_TOO_SMALL.rawValue)
    static let inUse = kvcache_status(truncatingIfNeeded: KVCACHE_ERR_BLOCKS_IN_USE.rawValue)
    static let insufficient = kvcache_status(truncatingIfNeeded: KVCACHE_ERR_INSUFFICIENT_BLOCKS.rawValue)
    static let nullPointer = kvcache_status(truncatingIfNeeded: KVCACHE_ERR_NULL_POINTER.rawValue)
    static let nullHandle = kvcache_status(truncatingIfNeeded: KVCACHE_ERR_NULL_HANDLE.rawValue)

    final class Chunks {
        let handle: OpaquePointer
        init(capacity: Int64, blockTokens: Int64 = 4, variants: Int64 = 2, namespace: String = "test") throws {
            var out: OpaquePointer?
            let s = namespace.withCString { kvcache_chunks_create(capacity, blockTokens, variants, $0, &out) }
            guard s == 0, let out else { throw CreateFailed(status: s) }
            handle = out
        }
        deinit { _ = kvcache_chunks_destroy(handle) }

        func key(_ tokens: [UInt32]) -> kvcache_key {
            var k = kvcache_key()
            #expect(tokens.withUnsafeBufferPointer { kvcache_chunks_key(handle, $0.baseAddress, $0.count, &k) } == 0)
            return k
        }
        func insert(_ chunk: kvcache_key, tokens: Int64, at: Int64, context: kvcache_key = .init(), impact: Double = .nan,
                    capacity: Int = 64) -> (kvcache_status, UInt64, [kvcache_block_id]) {
            var variant: UInt64 = 0, n = 0
            var blocks = [kvcache_block_id](repeating: -1, count: capacity)
            let s = kvcache_chunks_insert(handle, chunk, tokens, at, context, impact, &variant, &blocks, capacity, &n)
            return (s, variant, s == 0 ? Array(blocks[0 ..< n]) : [])
        }
        struct Plan { var status: kvcache_status; var summary: kvcache_chunk_plan; var spans: [kvcache_reused_span]; var recompute: [Int64]; var fresh: [kvcache_token_range] }
        func plan(_ segments: [kvcache_prompt_segment], context: kvcache_key = .init(), selection: kvcache_recompute_selection = KVCACHE_SELECT_HKVD,
                  ratio: Double = 0.25, seed: UInt64 = 1, capacity: Int = 64) -> Plan {
            var spans = [kvcache_reused_span](repeating: .init(), count: capacity)
            var recompute = [Int64](repeating: -1, count: capacity * 16)
            var fresh = [kvcache_token_range](repeating: .init(), count: capacity)
            var out = kvcache_chunk_plan()
            let s = segments.withUnsafeBufferPointer {
                kvcache_chunks_plan(handle, $0.baseAddress, $0.count, context, Int32(selection.rawValue), ratio, seed,
                                    &spans, capacity, &recompute, capacity * 16, &fresh, capacity, &out)
            }
            guard s == 0 else { return Plan(status: s, summary: out, spans: [], recompute: [], fresh: []) }
            return Plan(status: s, summary: out, spans: Array(spans[0 ..< out.n_spans]), recompute: Array(recompute[0 ..< out.n_recompute]),
                        fresh: Array(fresh[0 ..< out.n_fresh]))
        }
        var stats: kvcache_chunks_stats {
            var s = kvcache_chunks_stats()
            #expect(kvcache_chunks_get_stats(handle, &s) == 0)
            return s
        }
    }

    static func segment(_ kind: kvcache_segment_kind, _ tokens: Int64, _ chunk: kvcache_key = .init()) -> kvcache_prompt_segment {
        kvcache_prompt_segment(kind: Int32(kind.rawValue), tokens: tokens, chunk: chunk)
    }
    static func same(_ a: kvcache_chunks_stats, _ b: kvcache_chunks_stats) -> Bool {
        a.free_blocks == b.free_blocks && a.variants == b.variants && a.evicted_variants == b.evicted_variants && a.open_plans == b.open_plans
    }

    @Test func servesAPlanAndHoldsItsVariantsUntilCommit() throws {
        let c = try Chunks(capacity: 16)
        let a = c.key(Array(0 ..< 10)), b = c.key(Array(50 ..< 56)), missing = c.key([9, 9])
        // The key is the Swift chunk key under the same namespace.
        let swiftKey = ChunkKey(tokens: Array(0 ..< 10), namespace: "test").bits
        #expect(a.lo == swiftKey.lo && a.hi == swiftKey.hi)
        let (sa, va, blocksA) = c.insert(a, tokens: 10, at: 0)
        let (sb, vb, blocksB) = c.insert(b, tokens: 6, at: 3)
        #expect(sa == 0 && sb == 0 && blocksA.count == 3 && blocksB.count == 2 && Set(blocksA + blocksB).count == 5)
        var n = 0
        var again = [kvcache_block_id](repeating: 0, count: 3)
        #expect(kvcache_chunks_blocks(c.handle, va, &again, 3, &n) == 0 && n == 3 && again == blocksA)

        let p = c.plan([Self.segment(KVCACHE_SEGMENT_CACHED_PREFIX, 8), Self.segment(KVCACHE_SEGMENT_CHUNK, 6, b),
                        Self.segment(KVCACHE_SEGMENT_CHUNK, 2, missing), Self.segment(KVCACHE_SEGMENT_CHUNK, 10, a),
                        Self.segment(KVCACHE_SEGMENT_FRESH, 5)], selection: KVCACHE_SELECT_LEADING, ratio: 0.25)
        #expect(p.status == 0 && p.summary.plan_id != 0)
        #expect(p.summary.prompt_tokens == 31 && p.summary.prefix_tokens == 8 && p.summary.reused_tokens == 16 && p.summary.missing_chunks == 1)
        #expect(p.spans.map(\.variant) == [vb, va] && p.spans.map(\.target_start) == [8, 16] && p.spans.map(\.source_start) == [3, 0])
        #expect(p.spans.map(\.recompute_budget) == [2, 3] && p.spans.allSatisfy { $0.tier == Int32(KVCACHE_TIER_DEVICE.rawValue) && !$0.exact })
        #expect(p.recompute == [8, 9, 16, 17, 18])
        #expect(p.fresh.map { [$0.start, $0.end] } == [[14, 16], [26, 31]])
        #expect(c.stats.open_plans == 1 && kvcache_chunks_validate(c.handle) == 0)
        // Held: cannot be removed, nor evicted by an insert that needs every block.
        #expect(kvcache_chunks_remove(c.handle, va) == Self.inUse)
        let before = c.stats
        #expect(c.insert(c.key([1, 2, 3]), tokens: 64, at: 0).0 == Self.insufficient)
        #expect(Self.same(c.stats, before))
        #expect(kvcache_chunks_commit(c.handle, p.summary.plan_id) == 0)
        #expect(kvcache_chunks_commit(c.handle, p.summary.plan_id) == Self.invalid)
        #expect(kvcache_chunks_remove(c.handle, va) == 0 && c.stats.variants == 1)
        #expect(kvcache_chunks_blocks(c.handle, va, &again, 3, &n) == Self.invalid)
        #expect(kvcache_chunks_validate(c.handle) == 0)
    }

    @Test func refusedCallsSayWhyAndChangeNothing() throws {
        let c = try Chunks(capacity: 8)
        let a = c.key(Array(0 ..< 8))
        let (_, va, _) = c.insert(a, tokens: 8, at: 0)
        let before = c.stats
        // A buffer too short: the counts are set, no plan is made, nothing is held.
        var out = kvcache_chunk_plan()
        var seg = [Self.segment(KVCACHE_SEGMENT_CHUNK, 8, a), Self.segment(KVCACHE_SEGMENT_FRESH, 2)]
        #expect(kvcache_chunks_plan(c.handle, &seg, 2, .init(), Int32(KVCACHE_SELECT_NONE.rawValue), 0, 0, nil, 0, nil, 0, nil, 0, &out) == Self.tooSmall)
        #expect(out.n_spans == 1 && out.n_fresh == 1 && out.plan_id == 0)
        #expect(String(cString: kvcache_last_error()).contains("spans"))
        #expect(Self.same(c.stats, before))
        // Bad segments and arguments.
        for (segments, selection, ratio) in [
            ([Self.segment(KVCACHE_SEGMENT_CHUNK, 7, a)], KVCACHE_SELECT_NONE, 0.0),          // length differs from the stored chunk
            ([Self.segment(KVCACHE_SEGMENT_FRESH, 2), Self.segment(KVCACHE_SEGMENT_CACHED_PREFIX, 4)], KVCACHE_SELECT_NONE, 0.0),
            ([Self.segment(KVCACHE_SEGMENT_FRESH, 0)], KVCACHE_SELECT_NONE, 0.0),
            ([kvcache_prompt_segment(kind: 9, tokens: 3, chunk: .init())], KVCACHE_SELECT_NONE, 0.0),
            ([Self.segment(KVCACHE_SEGMENT_FRESH, 1 << 47), Self.segment(KVCACHE_SEGMENT_FRESH, 1 << 47), Self.segment(KVCACHE_SEGMENT_FRESH, 1 << 47)],
             KVCACHE_SELECT_NONE, 0.0),
            ([Self.segment(KVCACHE_SEGMENT_FRESH, 2)], KVCACHE_SELECT_HKVD, 1.5),
            ([Self.segment(KVCACHE_SEGMENT_FRESH, 2)], KVCACHE_SELECT_HKVD, .nan),
            ([Self.segment(KVCACHE_SEGMENT_FRESH, 2)], kvcache_recompute_selection(rawValue: 77), 0.1),
        ] {
            #expect(c.plan(segments, selection: selection, ratio: ratio).status == Self.invalid)
        }
        #expect(Self.same(c.stats, before))
        // Insert: too small a buffer, bad lengths and impacts.
        var variant: UInt64 = 42, n = 0
        var blocks = [kvcache_block_id](repeating: 0, count: 1)
        #expect(kvcache_chunks_insert(c.handle, c.key([5]), 8, 0, .init(), .nan, &variant, &blocks, 1, &n) == Self.tooSmall && n == 2)
        #expect(kvcache_chunks_insert(c.handle, c.key([5]), 0, 0, .init(), .nan, &variant, &blocks, 1, &n) == Self.invalid)
        #expect(kvcache_chunks_insert(c.handle, c.key([5]), 1, -1, .init(), .nan, &variant, &blocks, 1, &n) == Self.invalid)
        #expect(kvcache_chunks_insert(c.handle, c.key([5]), 1, 0, .init(), -1, &variant, &blocks, 1, &n) == Self.invalid)
        #expect(kvcache_chunks_insert(c.handle, c.key([5]), 1, 0, .init(), .infinity, &variant, &blocks, 1, &n) == Self.invalid)
        #expect(variant == 42 && Self.same(c.stats, before))
        // Unknown variants and plans; NULL handle and pointers; bad create arguments.
        #expect(kvcache_chunks_remove(c.handle, va ^ (1 << 40)) == Self.invalid)
        #expect(kvcache_chunks_commit(c.handle, 0) == Self.invalid && kvcache_chunks_commit(c.handle, 12345) == Self.invalid)
        #expect(kvcache_chunks_plan(c.handle, nil, 2, .init(), 0, 0, 0, nil, 0, nil, 0, nil, 0, &out) == Self.nullPointer)
        #expect(kvcache_chunks_plan(c.handle, nil, 0, .init(), 0, 0, 0, nil, 0, nil, 0, nil, 0, nil) == Self.nullPointer)
        #expect(kvcache_chunks_key(c.handle, nil, 0, nil) == Self.nullPointer)
        var k = kvcache_key(lo: 7, hi: 7)
        let none: [UInt32] = []
        #expect(none.withUnsafeBufferPointer { kvcache_chunks_key(c.handle, $0.baseAddress, 0, &k) } == Self.invalid && k.lo == 7)
        #expect(kvcache_chunks_plan(nil, nil, 0, .init(), 0, 0, 0, nil, 0, nil, 0, nil, 0, &out) == Self.nullHandle)
        #expect(kvcache_chunks_get_stats(nil, nil) == Self.nullHandle && kvcache_chunks_destroy(nil) == Self.nullHandle)
        var h: OpaquePointer? = nil
        #expect(kvcache_chunks_create(0, 4, 1, nil, &h) == Self.invalid && kvcache_chunks_create(4, 0, 1, nil, &h) == Self.invalid)
        #expect(kvcache_chunks_create(4, 4, 0, nil, &h) == Self.invalid && kvcache_chunks_create(1 << 40, 4, 1, nil, &h) == Self.invalid)
        #expect(kvcache_chunks_create(4, 4, 1, nil, nil) == Self.nullPointer && h == nil)
        #expect(Self.same(c.stats, before) && kvcache_chunks_validate(c.handle) == 0)
    }

    /// The Swift side of the lock-step run: the store, the open plans and their variants.
    struct SwiftSide {
        var store: ChunkStore
        var plans: [UInt64: ChunkPrefillPlan] = [:]
    }

    @Test(arguments: [1, 2, 3, 4] as [UInt64])
    func lockStepWithTheSwiftAPI(seed: UInt64) throws {
        let c = try Chunks(capacity: 24, blockTokens: 4, variants: 2)
        var swift = SwiftSide(store: try ChunkStore(capacityBlocks: 24, blockTokens: 4, maxVariantsPerChunk: 2))
        let root = BlockHasher.rootKey(namespace: "test")
        var rng = SplitMix64(seed: seed)
        func draw(_ n: Int) -> Int { Int(rng.next() % UInt64(n)) }
        // Six chunks of 3...14 tokens; two contexts.
        var chunkTokens: [[UInt32]] = []
        for i in 0 ..< 6 {
            let n = UInt32(3 + 2 * i + i % 2), base = UInt32(i) * 1000
            chunkTokens.append((0 ..< n).map { base + $0 })
        }
        let keys = chunkTokens.map { c.key($0) }
        let contexts = [kvcache_key(lo: 0, hi: 0), kvcache_key(lo: 5, hi: 6)]
        func bk(_ k: kvcache_key) -> BlockKey { BlockKey(lo: k.lo, hi: k.hi) }
        for (k, t) in zip(keys, chunkTokens) { #expect(bk(k) == ChunkKey(root: root, tokens: t.withUnsafeBufferPointer { $0 }).bits) }
        var variants: [UInt64] = []
        for step in 0 ..< 400 {
            switch draw(10) {
            case 0 ..< 3:  // insert (sometimes a wrong length or an impact)
                let i = draw(keys.count), ctx = contexts[draw(2)]
                let tokens = draw(8) == 0 ? 0 : chunkTokens[i].count
                let at = Int64(draw(20)), impact = draw(2) == 0 ? Double.nan : Double(draw(100)) / 100
                let (s, v, blocks) = c.insert(keys[i], tokens: Int64(tokens), at: at, context: ctx, impact: impact)
                do throws(ChunkError) {
                    let (id, list) = try swift.store.insert(ChunkKey(bits: bk(keys[i])), tokens: tokens, computedAt: Int(at), context: bk(ctx),
                                                            contextImpact: impact.isNaN ? nil : Float(impact))
                    #expect(s == 0 && v == id.raw && blocks == list, "step \(step)")
                    variants.append(v)
                } catch {
                    #expect(s != 0, "step \(step): Swift refused \(error), C did not")
                }
            case 3 ..< 7:  // plan
                var segments: [kvcache_prompt_segment] = []
                var pieces: [PromptPiece] = []
                if draw(2) == 0 { segments.append(Self.segment(KVCACHE_SEGMENT_CACHED_PREFIX, 8)); pieces.append(PromptPiece(.cachedPrefix, tokens: 8)) }
                for _ in 0 ..< 1 + draw(5) {
                    if draw(3) == 0 {
                        let n = 1 + draw(6)
                        segments.append(Self.segment(KVCACHE_SEGMENT_FRESH, Int64(n))); pieces.append(PromptPiece(.fresh, tokens: n))
                    } else {
                        let i = draw(keys.count)
                        let n = draw(12) == 0 ? chunkTokens[i].count + 1 : chunkTokens[i].count
                        segments.append(Self.segment(KVCACHE_SEGMENT_CHUNK, Int64(n), keys[i]))
                        pieces.append(PromptPiece(.chunk(ChunkKey(bits: bk(keys[i]))), tokens: n))
                    }
                }
                let ctx = contexts[draw(2)], ratio = Double(draw(5)) / 4
                let kinds: [(kvcache_recompute_selection, TokenSelection)] = [
                    (KVCACHE_SELECT_NONE, .none), (KVCACHE_SELECT_HKVD, .highDeviation(ratio: ratio)), (KVCACHE_SELECT_RANDOM, .random(ratio: ratio, seed: 7)),
                    (KVCACHE_SELECT_LEADING, .leading(ratio: ratio)), (KVCACHE_SELECT_CONTEXT_IMPACT, .contextImpact(ratio: ratio))]
                let (cSel, sSel) = kinds[draw(kinds.count)]
                let p = c.plan(segments, context: ctx, selection: cSel, ratio: ratio, seed: 7)
                var built: ChunkPrefillPlan? = nil
                do throws(ChunkError) {
                    built = try ChunkPrefillPlan.build(pieces, store: &swift.store, context: bk(ctx), selection: sSel)
                } catch {
                    #expect(p.status == Self.invalid, "step \(step): Swift refused \(error)")
                }
                if let plan = built {
                    try #require(p.status == 0, "step \(step)")
                    try plan.validate()
                    #expect(p.spans.map { ChunkVariantID(raw: $0.variant) } == plan.reused.map(\.variant), "step \(step)")
                    #expect(p.spans.map { Int($0.source_start) ..< Int($0.source_start + $0.tokens) } == plan.reused.map(\.source))
                    #expect(p.spans.map { Int($0.target_start) ..< Int($0.target_start + $0.tokens) } == plan.reused.map(\.target))
                    #expect(p.spans.map { Int($0.recompute_budget) } == plan.reused.map(\.recomputeBudget))
                    #expect(p.spans.map(\.exact) == plan.reused.map(\.exact))
                    #expect(p.recompute.map { Int($0) } == plan.recompute)
                    #expect(p.fresh.map { Int($0.start) ..< Int($0.end) } == plan.fresh)
                    #expect(Int(p.summary.missing_chunks) == plan.missingChunks && Int(p.summary.prompt_tokens) == plan.promptTokens)
                    #expect(Int(p.summary.prefix_tokens) == plan.prefix.count)
                    swift.plans[p.summary.plan_id] = plan
                }
            case 7:  // commit an open plan, or one not open
                if let id = swift.plans.keys.sorted().first, draw(4) != 0 {
                    #expect(kvcache_chunks_commit(c.handle, id) == 0)
                    try swift.plans.removeValue(forKey: id)!.release(from: &swift.store)
                } else {
                    #expect(kvcache_chunks_commit(c.handle, rng.next() | 1 << 63) == Self.invalid)
                }
            case 8:  // remove a variant (held, gone or unheld)
                guard !variants.isEmpty else { continue }
                let v = variants[draw(variants.count)]
                let s = kvcache_chunks_remove(c.handle, v)
                do throws(ChunkError) {
                    try swift.store.remove(ChunkVariantID(raw: v))
                    #expect(s == 0, "step \(step)")
                } catch {
                    #expect(s == (error == .variantHeld(ChunkVariantID(raw: v)) ? Self.inUse : Self.invalid), "step \(step)")
                }
            default:  // the blocks of a variant
                guard !variants.isEmpty else { continue }
                let v = variants[draw(variants.count)]
                var n = 0
                var blocks = [kvcache_block_id](repeating: 0, count: 8)
                let s = kvcache_chunks_blocks(c.handle, v, &blocks, 8, &n)
                if let list = try? swift.store.blocks(of: ChunkVariantID(raw: v)) {
                    #expect(s == 0 && Array(blocks[0 ..< n]) == list)
                } else {
                    #expect(s == Self.invalid)
                }
            }
            let st = c.stats
            #expect(Int(st.free_blocks) == swift.store.pool.freeCount && Int(st.variants) == swift.store.count, "step \(step)")
            #expect(Int(st.evicted_variants) == swift.store.evictedVariants && Int(st.open_plans) == swift.plans.count)
            #expect(kvcache_chunks_validate(c.handle) == 0)
            try swift.store.validate()
        }
    }

    /// A tiered store (kvcache_chunks_create_tiered): passages put with their KV, evicted to host and on to
    /// disk, come back in plans whose spans say HOST and DISK with the bytes that were put; a plan refused
    /// for a short buffer loads nothing; put and fetch refuse wrong sizes and changes nothing.
    /// The tiers of the tiered tests: 2-layer fp16 blocks of 4 tokens (256 bytes), one worker, disk writes
    /// only on host eviction.
    static func tiersConfig(deviceBlocks: Int64, hostBlocks: Int64) -> kvcache_tiers_config {
        var config = kvcache_tiers_config()
        #expect(kvcache_tiers_config_init(&config) == 0)
        config.layers = 2; config.kv_heads = 1; config.head_dim = 8; config.dtype_bytes = 2; config.block_tokens = 4
        config.device_blocks = deviceBlocks; config.host_blocks = hostBlocks; config.workers = 1; config.spill_watermark = 1
        config.disk_capacity_bytes = 1 << 22
        return config
    }

    /// A tiered store on `config` with its disk tier in `dir` (2 variants per chunk), or nil when refused.
    static func tieredStore(_ config: inout kvcache_tiers_config, _ dir: borrowing TempDirectory, namespace: String) -> OpaquePointer? {
        var handle: OpaquePointer?
        let status = dir.path.withCString { path in
            config.disk_directory = path
            return kvcache_chunks_create_tiered_checked(UInt32(KVCACHE_ABI_VERSION), MemoryLayout<kvcache_tiers_config>.size, &config, 2,
                                                        namespace, &handle)
        }
        return status == 0 ? handle : nil
    }

    @Test func aTieredStoreLoadsSpilledChunksWithTheirBytesAndRefusesBeforeLoading() throws {
        let dir = TempDirectory("kvchunks-cabi")
        var config = Self.tiersConfig(deviceBlocks: 4, hostBlocks: 2)
        let c = try #require(Self.tieredStore(&config, dir, namespace: "cabi"))
        defer { _ = kvcache_chunks_destroy(c) }
        func bytes(_ p: Int) -> [UInt8] { (0 ..< 512).map { UInt8(truncatingIfNeeded: p * 131 + $0 * 7 + $0 >> 8) } }
        var keys: [kvcache_key] = []
        for p in 0 ..< 4 {
            var k = kvcache_key()
            let tokens = (0 ..< 8).map { UInt32(p * 1000 + $0) }
            #expect(kvcache_chunks_key(c, tokens, 8, &k) == 0)
            keys.append(k)
            var variant: UInt64 = 0, n = 0
            var blocks = [kvcache_block_id](repeating: -1, count: 2)
            #expect(kvcache_chunks_insert(c, k, 8, 0, kvcache_key(), .nan, &variant, &blocks, 2, &n) == 0)
            let kv = bytes(p)
            #expect(kvcache_chunks_put(c, variant, kv, 100) == Self.invalid)
            #expect(kvcache_chunks_put(c, variant, kv, 512) == 0)
            var back = [UInt8](repeating: 0, count: 512)
            #expect(kvcache_chunks_fetch(c, variant, &back, 511, &n) == Self.tooSmall && n == 512)
            #expect(kvcache_chunks_fetch(c, variant, &back, 512, &n) == 0 && back == kv)
        }
        var ts = kvcache_chunks_tier_stats(), st = kvcache_chunks_stats()
        #expect(kvcache_chunks_get_tier_stats(c, &ts) == 0 && ts.spilled_variants == 2 && ts.block_bytes == 256)
        #expect(kvcache_chunks_get_stats(c, &st) == 0)
        // Too short a span buffer: the counts of the plan with passage 0 loaded, and nothing loaded.
        var segment = kvcache_prompt_segment(kind: Int32(KVCACHE_SEGMENT_CHUNK.rawValue), tokens: 8, chunk: keys[0])
        var out = kvcache_chunk_plan()
        var recompute = [Int64](repeating: 0, count: 8)
        var fresh = [kvcache_token_range](repeating: .init(), count: 2)
        #expect(kvcache_chunks_plan(c, &segment, 1, kvcache_key(), Int32(KVCACHE_SELECT_NONE.rawValue), 0, 0, nil, 0, &recompute, 8,
                                    &fresh, 2, &out) == Self.tooSmall && out.n_spans == 1 && out.missing_chunks == 0)
        var after = kvcache_chunks_stats(), tsAfter = kvcache_chunks_tier_stats()
        #expect(kvcache_chunks_get_stats(c, &after) == 0 && Self.same(st, after))
        #expect(kvcache_chunks_get_tier_stats(c, &tsAfter) == 0 && tsAfter.loaded_variants == 0 && tsAfter.spilled_variants == 2)
        for (p, tier) in [(1, KVCACHE_TIER_HOST), (0, KVCACHE_TIER_DISK), (0, KVCACHE_TIER_DEVICE)] {
            segment.chunk = keys[p]
            var span = kvcache_reused_span()
            #expect(kvcache_chunks_plan(c, &segment, 1, kvcache_key(), Int32(KVCACHE_SELECT_NONE.rawValue), 0, 0, &span, 1, &recompute, 8,
                                        &fresh, 2, &out) == 0)
            #expect(out.n_spans == 1 && span.tier == Int32(tier.rawValue), "passage \(p)")
            var back = [UInt8](repeating: 0, count: 512), n = 0
            #expect(kvcache_chunks_fetch(c, span.variant, &back, 512, &n) == 0 && back == bytes(p), "passage \(p)")
            #expect(kvcache_chunks_validate(c) == 0)
            #expect(kvcache_chunks_commit(c, out.plan_id) == 0)
        }
        #expect(kvcache_chunks_get_tier_stats(c, &ts) == 0 && ts.loaded_variants == 2 && ts.failed_loads == 0)
        // A tiered store needs a host tier and keeps its own device pool.
        var refused: OpaquePointer?
        config.disk_directory = nil
        config.host_blocks = 0
        #expect(kvcache_chunks_create_tiered_checked(UInt32(KVCACHE_ABI_VERSION), MemoryLayout<kvcache_tiers_config>.size, &config, 2, nil, &refused)
                == Self.invalid && refused == nil)
        #expect(kvcache_chunks_validate(c) == 0)
    }

    /// A tiered store with a loading controller through the C ABI, in lock-step with a `TieredChunkStore`
    /// given the same operations, controller and bandwidths: seeded random puts, bandwidth changes (a
    /// slow disk or one slower than recompute at 0.15, a slow or fast host) and HKVD plans at 0.15; every plan's spans (chunk,
    /// tier, and recompute budget: raised to the controller's ratio for a chunk loaded slowly), missing
    /// chunks and per-segment loads (action, tier, decision) equal, the fetched bytes those put, both
    /// valid after every step.
    @Test(arguments: [5, 6, 7] as [UInt64])
    func tieredPlansWithAControllerInLockStepWithTheSwiftAPI(seed: UInt64) throws {
        let cDir = TempDirectory("kvchunks-cabi-lockstep"), sDir = TempDirectory("kvchunks-swift-lockstep")
        var config = Self.tiersConfig(deviceBlocks: 6, hostBlocks: 4)
        let c = try #require(Self.tieredStore(&config, cDir, namespace: "lockstep"))
        defer { _ = kvcache_chunks_destroy(c) }
        let layout = try KVGeometry(layers: 2, kvHeads: 1, headDim: 8, dtype: .fp16, blockTokens: 4)
        var tc = TierConfig(layout: layout, hostBlocks: 4, disk: DiskStoreConfig(directory: sDir.path, capacityBytes: 1 << 22, layout: layout))
        tc.workers = 1; tc.spillWatermark = 1; tc.lockHostMemory = false; tc.layerGroups = 1
        let device = try HostDeviceMemory(layout: layout, capacityBlocks: 6)
        let swift = try TieredChunkStore(store: try ChunkStore(capacityBlocks: 6, blockTokens: 4, maxVariantsPerChunk: 2),
                                         tiers: try KVTierManager(config: tc, device: device))
        defer { swift.tiers.close() }
        let root = BlockHasher.rootKey(namespace: "lockstep", lora: "", salt: "")
        func bytes(_ p: Int) -> [UInt8] { (0 ..< 512).map { UInt8(truncatingIfNeeded: p * 131 + $0 * 7 + $0 >> 8) } }
        let keys: [kvcache_key] = (0 ..< 8).map { p in
            let tokens = (0 ..< 8).map { UInt32(p * 1000 + $0) }
            let k = tokens.withUnsafeBufferPointer { ChunkKey(root: root, tokens: $0) }.bits
            var ck = kvcache_key()
            #expect(kvcache_chunks_key(c, tokens, 8, &ck) == 0 && ck.lo == k.lo && ck.hi == k.hi)
            return ck
        }
        func chunk(_ p: Int) -> ChunkKey { ChunkKey(bits: BlockKey(lo: keys[p].lo, hi: keys[p].hi)) }
        var rng = SplitMix64(seed: seed)
        func draw(_ n: Int) -> Int { Int(rng.next() % UInt64(n)) }
        var controller: LoadingController? = nil
        var host = LoadingController.Tier(name: "host", bytesPerSecond: 10e9), disk = LoadingController.Tier(name: "disk", bytesPerSecond: 1)
        var decided = 0, declined = 0, loaded = 0, raised = 0
        for step in 0 ..< 120 {
            switch draw(10) {
            case 0 ..< 4:  // the engine computes a passage and keeps it
                let p = draw(8)
                var variant: UInt64 = 0, n = 0
                var blocks = [kvcache_block_id](repeating: -1, count: 2)
                #expect(kvcache_chunks_insert(c, keys[p], 8, 0, kvcache_key(), .nan, &variant, &blocks, 2, &n) == 0)
                #expect(kvcache_chunks_put(c, variant, bytes(p), 512) == 0)
                let (id, list) = try swift.insert(chunk(p), tokens: 8, computedAt: 0, context: root)
                #expect(id.raw == variant && list == blocks, "step \(step)")
                for (b, block) in list.enumerated() {
                    _ = device.withBlock(block) { dst in bytes(p)[b * 256 ..< b * 256 + 256].withUnsafeBytes { dst.copyMemory(from: $0) } }
                }
                try swift.commit(id)
            case 4:  // new bandwidths, or no controller
                host.bytesPerSecond = [1, 10e9][draw(2)]
                // 1.28 MB/s: a chunk loads, slower than 2 tokens' recompute (its budget raised to the controller's ratio).
                disk.bytesPerSecond = [1, 1e5, 1.28e6][draw(3)]
                let none = draw(5) == 0
                var lc = kvcache_loading_controller(recompute_seconds_per_token: 1e-4, recompute_seconds_per_context_pair: 1e-8, minimum_ratio: 0.15,
                                                    host_bytes_per_second: host.bytesPerSecond, disk_bytes_per_second: disk.bytesPerSecond)
                #expect((none ? kvcache_chunks_set_loading_controller(c, nil) : kvcache_chunks_set_loading_controller(c, &lc)) == 0)
                controller = none ? nil : try LoadingController(cost: try RecomputeCost(secondsPerToken: 1e-4, secondsPerContextPair: 1e-8),
                                                                layers: 2, kvBytesPerToken: 64, minimumRatio: 0.15)
            default:  // a prompt of fresh text and 1...3 passages
                let passages = (0 ..< draw(3) + 1).map { _ in draw(8) }
                var segments = [kvcache_prompt_segment(kind: Int32(KVCACHE_SEGMENT_FRESH.rawValue), tokens: 3, chunk: kvcache_key())]
                var pieces = [PromptPiece(.fresh, tokens: 3)]
                for p in passages {
                    segments.append(kvcache_prompt_segment(kind: Int32(KVCACHE_SEGMENT_CHUNK.rawValue), tokens: 8, chunk: keys[p]))
                    pieces.append(PromptPiece(.chunk(chunk(p)), tokens: 8))
                }
                var spans = [kvcache_reused_span](repeating: .init(), count: 4), recompute = [Int64](repeating: 0, count: 32)
                var fresh = [kvcache_token_range](repeating: .init(), count: 8), out = kvcache_chunk_plan()
                let s = kvcache_chunks_plan(c, segments, segments.count, kvcache_key(), Int32(KVCACHE_SELECT_HKVD.rawValue), 0.15, 0, &spans, 4,
                                            &recompute, 32, &fresh, 8, &out)
                var loads: [TieredChunkStore.ChunkLoad] = []
                let plan = try swift.plan(pieces, context: root, selection: .highDeviation(ratio: 0.15), controller: controller,
                                          host: controller == nil ? nil : host, disk: controller == nil ? nil : disk, loads: &loads)
                #expect(s == 0, "step \(step)")
                guard s == 0 else { try swift.release(plan: plan); continue }
                #expect(out.n_spans == plan.reused.count && Int(out.missing_chunks) == plan.missingChunks, "step \(step)")
                for (i, span) in plan.reused.enumerated() where i < out.n_spans {
                    #expect(spans[i].chunk.lo == span.chunk.bits.lo && spans[i].variant == span.variant.raw, "step \(step)")
                    // Loaded chunks budgeted at the controller's ratio where above 0.15, on both sides alike.
                    #expect(spans[i].recompute_budget == Int64(span.recomputeBudget), "step \(step)")
                    if span.recomputeBudget > 2 { raised += 1 }
                    #expect(spans[i].tier == Int32([ChunkTier.device: KVCACHE_TIER_DEVICE, .host: KVCACHE_TIER_HOST, .disk: KVCACHE_TIER_DISK][span.tier]!.rawValue))
                    var back = [UInt8](repeating: 0, count: 512), n = 0
                    let p = keys.firstIndex { $0.lo == spans[i].chunk.lo }!
                    #expect(kvcache_chunks_fetch(c, spans[i].variant, &back, 512, &n) == 0 && back == bytes(p), "step \(step)")
                }
                var cLoads = [kvcache_chunk_load](repeating: .init(), count: 4), n = 0
                #expect(kvcache_chunks_plan_loads(c, out.plan_id, &cLoads, 4, &n) == 0 && n == loads.count)
                for (cl, l) in zip(cLoads, loads) {
                    let action: kvcache_chunk_action, tier: kvcache_tier
                    switch l.action {
                    case .device: (action, tier) = (KVCACHE_CHUNK_IN_POOL, KVCACHE_TIER_DEVICE)
                    case let .loaded(t): (action, tier) = (KVCACHE_CHUNK_LOADED, t == .disk ? KVCACHE_TIER_DISK : KVCACHE_TIER_HOST)
                    case let .recompute(t): (action, tier) = (KVCACHE_CHUNK_RECOMPUTE, t == .disk ? KVCACHE_TIER_DISK : KVCACHE_TIER_HOST)
                    case .missing: (action, tier) = (KVCACHE_CHUNK_MISSING, KVCACHE_TIER_DEVICE)
                    }
                    #expect(cl.segment == Int64(l.piece) && cl.action == Int32(action.rawValue) && cl.tier == Int32(tier.rawValue), "step \(step)")
                    #expect(cl.decided == (l.decision != nil) && cl.ratio == (l.decision?.ratio ?? 0)
                            && cl.load_seconds == (l.decision?.loadSeconds ?? 0), "step \(step)")
                    if l.decision != nil { decided += 1 }
                    if case .recompute = l.action { declined += 1 }
                    if case .loaded = l.action { loaded += 1 }
                }
                #expect(kvcache_chunks_commit(c, out.plan_id) == 0)
                try swift.release(plan: plan)
            }
            #expect(kvcache_chunks_validate(c) == 0, "step \(step)")
            try swift.store.validate()
        }
        #expect(decided > 0 && declined > 0 && loaded > 0 && raised > 0, "decided \(decided), declined \(declined), loaded \(loaded), raised \(raised)")
    }

    /// The engine's device memory for `aTieredStoreOverTheEnginesMemoryCopiesThroughItsCallbacks`: blocks
    /// of 256 bytes, the store its copies report to, and whether loads into the device fail.
    final class Engine {
        var pool = [UInt8](repeating: 0, count: 4 * 256)
        var store: OpaquePointer?
        var failLoads = false
        var copies = 0
    }

    /// With copy callbacks the pool is the engine's own memory: the engine writes each passage into the
    /// blocks insert returns and marks it written (put and fetch refused); evictions and loads run through
    /// its callbacks, so a plan's span blocks hold the passage's bytes in the engine's memory; a load the
    /// engine reports failed is never served (the segment is missing).
    @Test func aTieredStoreOverTheEnginesMemoryCopiesThroughItsCallbacks() throws {
        let dir = TempDirectory("kvchunks-cabi-engine")
        let engine = Engine()
        var config = Self.tiersConfig(deviceBlocks: 4, hostBlocks: 2)
        config.copy_context = Unmanaged.passUnretained(engine).toOpaque()
        config.device_to_host = { context, block, offset, length, host, token in
            let e = Unmanaged<Engine>.fromOpaque(context!).takeUnretainedValue()
            e.pool.withUnsafeBytes { host!.copyMemory(from: $0.baseAddress! + Int(block) * 256 + offset, byteCount: length) }
            e.copies += 1
            _ = kvcache_chunks_copy_done(e.store, token, true)
        }
        config.host_to_device = { context, block, offset, length, host, token in
            let e = Unmanaged<Engine>.fromOpaque(context!).takeUnretainedValue()
            e.pool.withUnsafeMutableBytes { ($0.baseAddress! + Int(block) * 256 + offset).copyMemory(from: host!, byteCount: length) }
            e.copies += 1
            _ = kvcache_chunks_copy_done(e.store, token, !e.failLoads)
        }
        let c = try #require(Self.tieredStore(&config, dir, namespace: "engine"))
        engine.store = c
        defer { _ = kvcache_chunks_destroy(c) }
        func bytes(_ p: Int) -> [UInt8] { (0 ..< 512).map { UInt8(truncatingIfNeeded: p * 131 + $0 * 7 + $0 >> 8) } }
        var keys: [kvcache_key] = []
        for p in 0 ..< 4 {
            var k = kvcache_key(), variant: UInt64 = 0, n = 0
            #expect(kvcache_chunks_key(c, (0 ..< 8).map { UInt32(p * 1000 + $0) }, 8, &k) == 0)
            keys.append(k)
            var blocks = [kvcache_block_id](repeating: -1, count: 2)
            #expect(kvcache_chunks_insert(c, k, 8, 0, kvcache_key(), .nan, &variant, &blocks, 2, &n) == 0)
            #expect(kvcache_chunks_put(c, variant, bytes(p), 512) == Self.invalid)
            for (b, block) in blocks.enumerated() { engine.pool.replaceSubrange(Int(block) * 256 ..< Int(block) * 256 + 256, with: bytes(p)[b * 256 ..< b * 256 + 256]) }
            #expect(kvcache_chunks_mark_written(c, variant) == 0)
        }
        #expect(engine.copies >= 2 && kvcache_chunks_copy_done(c, 1 << 40, true) == Self.invalid)
        var segment = kvcache_prompt_segment(kind: Int32(KVCACHE_SEGMENT_CHUNK.rawValue), tokens: 8, chunk: keys[1])
        var span = kvcache_reused_span(), out = kvcache_chunk_plan(), recompute = [Int64](repeating: 0, count: 8)
        var fresh = [kvcache_token_range](repeating: .init(), count: 2)
        #expect(kvcache_chunks_plan(c, &segment, 1, kvcache_key(), Int32(KVCACHE_SELECT_NONE.rawValue), 0, 0, &span, 1, &recompute, 8,
                                    &fresh, 2, &out) == 0)
        #expect(out.n_spans == 1 && span.tier == Int32(KVCACHE_TIER_HOST.rawValue))
        var blocks = [kvcache_block_id](repeating: -1, count: 2), n = 0, back = [UInt8](repeating: 0, count: 512)
        #expect(kvcache_chunks_blocks(c, span.variant, &blocks, 2, &n) == 0)
        #expect(blocks.flatMap { engine.pool[Int($0) * 256 ..< Int($0) * 256 + 256] } == bytes(1))
        #expect(kvcache_chunks_fetch(c, span.variant, &back, 512, &n) == Self.invalid)
        #expect(kvcache_chunks_commit(c, out.plan_id) == 0)
        // The engine fails the load of passage 0 (on disk): never served, planned as missing.
        engine.failLoads = true
        segment.chunk = keys[0]
        #expect(kvcache_chunks_plan(c, &segment, 1, kvcache_key(), Int32(KVCACHE_SELECT_NONE.rawValue), 0, 0, &span, 1, &recompute, 8,
                                    &fresh, 2, &out) == 0)
        #expect(out.n_spans == 0 && out.missing_chunks == 1)
        var ts = kvcache_chunks_tier_stats()
        #expect(kvcache_chunks_get_tier_stats(c, &ts) == 0 && ts.loaded_variants == 1 && ts.failed_loads == 1)
        #expect(kvcache_chunks_commit(c, out.plan_id) == 0)
        #expect(kvcache_chunks_validate(c) == 0)
    }
}
