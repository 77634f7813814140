import CKVCache
import KVCache
import Testing

/// The hybrid cache through the C header (kvcache_hybrid_*): the engine contract end to end, the
/// checkpoint events mirroring the tree's slots, and every refused call returning its status, saying
/// why, and changing nothing (the stats and the caller's out-parameters stay as they were).
@Suite("hybrid cache through the C ABI")
struct HybridCABITests {
    final class Hybrid {
        let handle: OpaquePointer
        init(model: String = "hybrid-7b", capacity: Int64, events: Bool = true, tuning: Bool = false) throws {
            var out: OpaquePointer?
            let status = model.withCString { kvcache_hybrid_create($0, capacity, events, tuning, &out) }
            guard status == 0, let out else { throw CStatus(status) }
            handle = out
        }
        deinit { _ = kvcache_hybrid_destroy(handle) }

        func plan(_ prompt: [Int32]) -> (kvcache_status, kvcache_hybrid_plan) {
            var p = kvcache_hybrid_plan()
            let s = prompt.withUnsafeBufferPointer { kvcache_hybrid_plan_prefill(handle, $0.baseAddress, $0.count, &p) }
            return (s, p)
        }
        func commit(_ tokens: [Int32], _ plan: kvcache_hybrid_plan, branch: Bool = true, end: Bool = true) -> kvcache_status {
            var p = plan
            return tokens.withUnsafeBufferPointer { kvcache_hybrid_commit(handle, $0.baseAddress, $0.count, &p, branch, end) }
        }
        var stats: kvcache_hybrid_stats {
            var s = kvcache_hybrid_stats()
            #expect(kvcache_hybrid_get_stats(handle, &s) == 0)
            return s
        }
        func events(capacity: Int = 3) -> [kvcache_hybrid_event] {
            var all: [kvcache_hybrid_event] = []
            var buffer = [kvcache_hybrid_event](repeating: .init(), count: capacity)
            while true {
                var n = 0
                #expect(kvcache_hybrid_drain_events(handle, &buffer, capacity, &n) == 0)
                all += buffer[0 ..< n]
                if n < capacity { return all }
            }
        }
    }

    static func same(_ a: kvcache_hybrid_stats, _ b: kvcache_hybrid_stats) -> Bool {
        a.bytes == b.bytes && a.checkpoints == b.checkpoints && a.cached_tokens == b.cached_tokens && a.nodes == b.nodes
    }

    @Test(arguments: [false, true])
    func servesAPlannedRequestAndMirrorsItsSlots(tuning: Bool) throws {
        let ckpt: Int64 = 26_787_840, kv: Int64 = 65_536
        let h = try Hybrid(capacity: 6 * ckpt + 200 * kv, tuning: tuning)
        var slots = Set<Int32>()
        var rng = SplitMix64(seed: 3)
        for step in 0 ..< 300 {
            let head = Int32(rng.next() % 3)
            let prompt: [Int32] = (0 ..< 8).map { head * 100 + $0 } + (0 ..< Int(rng.next() % 6)).map { _ in Int32(rng.next() % 3) }
            let (s, p) = h.plan(prompt)
            try #require(s == 0)
            #expect(p.hit_tokens <= p.raw_tokens && p.raw_tokens <= Int64(prompt.count))
            #expect((p.hit_tokens == 0) == (p.restore_slot == -1))
            if p.restore_slot >= 0 { #expect(slots.contains(p.restore_slot), "step \(step): restores a slot never stored") }
            #expect(h.commit(prompt + [7, 7], p, branch: rng.next() % 3 != 0, end: rng.next() % 4 != 0) == 0)
            for e in h.events() {
                if e.kind == Int32(KVCACHE_HYBRID_CHECKPOINT_STORED.rawValue) {
                    #expect(slots.insert(e.slot).inserted)
                } else {
                    #expect(e.kind == Int32(KVCACHE_HYBRID_CHECKPOINT_REMOVED.rawValue))
                    #expect(slots.remove(e.slot) != nil)
                }
            }
            let st = h.stats
            #expect(Int64(slots.count) == st.checkpoints)
            #expect(st.bytes <= st.capacity_bytes)
            #expect(st.bytes == st.checkpoints * st.checkpoint_bytes + st.cached_tokens * st.kv_bytes_per_token)
            #expect(kvcache_hybrid_validate(h.handle) == 0)
        }
    }

    @Test func refusedCallsSayWhyAndChangeNothing() throws {
        let h = try Hybrid(capacity: 26_787_840 + 10 * 65_536)
        let (s0, p0) = h.plan([1, 2, 3])
        #expect(s0 == 0 && h.commit([1, 2, 3], p0) == 0)
        let before = h.stats
        let invalid = Int32(KVCACHE_ERR_INVALID_ARGUMENT.rawValue)

        // Too large for the cache, even empty.
        let (_, p1) = h.plan(Array(0 ..< 11))
        #expect(h.commit(Array(0 ..< 11), p1) == invalid)
        #expect(String(cString: kvcache_last_error()).contains("cannot fit"))
        #expect(Self.same(h.stats, before))
        // A stale plan: another commit came between.
        let (_, p2) = h.plan([5, 6])
        let (_, p3) = h.plan([8])
        #expect(h.commit([8], p3) == 0)
        let after = h.stats
        #expect(h.commit([5, 6], p2) == invalid)
        #expect(String(cString: kvcache_last_error()).contains("earlier state"))
        #expect(Self.same(h.stats, after))
        // A branch point outside the sequence, a negative count in the plan.
        var (_, p4) = h.plan([9, 9])
        p4.save_branch_at = 5
        #expect(h.commit([9, 9], p4) == invalid)
        p4.save_branch_at = 0
        #expect(h.commit([9, 9], p4) == invalid)
        p4.save_branch_at = -1
        p4.hit_tokens = -3
        #expect(h.commit([9, 9], p4) == invalid)
        #expect(Self.same(h.stats, after))

        // NULL handle and pointers; a length C can express but the cache cannot take; an out-parameter
        // left alone on failure.
        var out = kvcache_hybrid_plan(hit_tokens: 42, restore_slot: 42, raw_tokens: 42, save_branch_at: 42, generation: 42)
        #expect(kvcache_hybrid_plan_prefill(nil, nil, 0, &out) == Int32(KVCACHE_ERR_NULL_HANDLE.rawValue))
        #expect(kvcache_hybrid_plan_prefill(h.handle, nil, 3, &out) == Int32(KVCACHE_ERR_NULL_POINTER.rawValue))
        let token: [Int32] = [1]
        #expect(token.withUnsafeBufferPointer { kvcache_hybrid_plan_prefill(h.handle, $0.baseAddress, Int.max, &out) } == invalid)
        #expect(token.withUnsafeBufferPointer { kvcache_hybrid_plan_prefill(h.handle, $0.baseAddress, -1, &out) } == invalid)
        #expect(out.hit_tokens == 42 && out.generation == 42)
        #expect(kvcache_hybrid_plan_prefill(h.handle, nil, 0, nil) == Int32(KVCACHE_ERR_NULL_POINTER.rawValue))
        #expect(kvcache_hybrid_commit(h.handle, nil, 0, nil, true, true) == Int32(KVCACHE_ERR_NULL_POINTER.rawValue))
        var n = 99
        #expect(kvcache_hybrid_drain_events(h.handle, nil, 4, &n) == Int32(KVCACHE_ERR_NULL_POINTER.rawValue))
        #expect(n == 99)
        #expect(kvcache_hybrid_get_stats(nil, nil) == Int32(KVCACHE_ERR_NULL_HANDLE.rawValue))
        #expect(kvcache_hybrid_validate(nil) == Int32(KVCACHE_ERR_NULL_HANDLE.rawValue))
        #expect(kvcache_hybrid_destroy(nil) == Int32(KVCACHE_ERR_NULL_HANDLE.rawValue))
        #expect(Self.same(h.stats, after))
        #expect(kvcache_hybrid_validate(h.handle) == 0)
    }

    @Test func createRefusesBadArguments() {
        var out: OpaquePointer? = nil
        let invalid = Int32(KVCACHE_ERR_INVALID_ARGUMENT.rawValue)
        #expect("llama3-8b".withCString { kvcache_hybrid_create($0, 1 << 30, false, false, &out) } == invalid)
        #expect("hybrid-7b".withCString { kvcache_hybrid_create($0, 0, false, false, &out) } == invalid)
        #expect("hybrid-7b".withCString { kvcache_hybrid_create($0, -5, false, false, &out) } == invalid)
        #expect(kvcache_hybrid_create(nil, 1 << 30, false, false, &out) == invalid)
        let bad: [CChar] = [CChar(bitPattern: 0xFF), 0]
        #expect(kvcache_hybrid_create(bad, 1 << 30, false, false, &out) == invalid)
        #expect("hybrid-7b".withCString { kvcache_hybrid_create($0, 1 << 30, false, false, nil) } == Int32(KVCACHE_ERR_NULL_POINTER.rawValue))
        #expect(out == nil)
        for model in ["hybrid-7b", "jamba-1.5-mini", "nemotron-h-8b"] {
            #expect(model.withCString { kvcache_hybrid_create($0, 1 << 30, false, true, &out) } == 0)
            if let h = out { #expect(kvcache_hybrid_destroy(h) == 0) }
            out = nil
        }
    }
}
