import CKVCache
import KVCacheC

/// One steady-state round of the tier calls through the C ABI (kvcache.h, as a server calls them), over
/// a 32-block prompt: prepare_store + complete_store (every store evicts host blocks: five prompts cycle
/// through a host tier that holds three), lookup, prepare_load + complete_load into the other half of
/// the stand-in device pool, touch and take_events (events recorded). Units are rounds. With the
/// benchmark's malloc metric it shows what tools/capi/allocs.sh asserts: no allocation per round, on any
/// thread, once warm.
public final class TierABIWorkload: Workload {
    public let units: Int
    let tiers: OpaquePointer
    let prompt: Int
    let prompts = 5
    var keys: [kvcache_key]
    var blocks: [Int32]
    var locations: [Int32]
    var ok: [UInt8]
    var events: [kvcache_event]
    var eventKeys: [kvcache_key]
    var round = 0

    /// - Parameters: rounds per `run`; blocks per prompt.
    public init(rounds: Int = 16, prompt: Int = 32) throws {
        units = rounds
        self.prompt = prompt
        var c = kvcache_tiers_config()
        _ = kvcache_tiers_config_init(&c)
        c.layers = 2; c.kv_heads = 2; c.head_dim = 8; c.dtype_bytes = 2; c.block_tokens = 4
        c.device_blocks = Int64(2 * prompt)
        c.host_blocks = Int64(3 * prompt + 8)
        c.layer_groups = 2
        c.spill_watermark = 1
        c.record_events = true
        var out: OpaquePointer?
        let status = kvcache_tiers_create_checked(UInt32(KVCACHE_ABI_VERSION), MemoryLayout<kvcache_tiers_config>.size,
                                                  &c, &out)
        try Self.check(status, "kvcache_tiers_create")
        guard let out else { throw TraceControlPlane.CallFailed(description: "kvcache_tiers_create: no handle") }
        tiers = out
        keys = (0 ..< 5 * prompt).map { kvcache_key(lo: 0x9e37_79b9_7f4a_7c15 &* UInt64($0 + 1), hi: UInt64($0 + 1)) }
        blocks = Array(repeating: 0, count: prompt)
        locations = Array(repeating: 0, count: prompt)
        ok = Array(repeating: 0, count: prompt)
        events = Array(repeating: kvcache_event(), count: 4 * prompt)
        eventKeys = Array(repeating: kvcache_key(), count: 4 * prompt)
    }

    deinit { _ = kvcache_tiers_destroy(tiers) }

    public func prepare() throws {}

    public func run() throws {
        for _ in 0 ..< units { try oneRound() }
    }

    private static func check(_ status: kvcache_status, _ call: String) throws {
        guard status != 0 else { return }
        throw TraceControlPlane.CallFailed(description: "\(call): \(String(cString: kvcache_status_name(status))): \(String(cString: kvcache_last_error()))")
    }

    private func check(_ status: kvcache_status, _ call: String) throws { try Self.check(status, call) }

    private func oneRound() throws {
        let n = prompt
        let first = (round % prompts) * n
        for i in 0 ..< n { blocks[i] = Int32((round % 2) * n + i) }
        var id: UInt64 = 0, count = 0, keyCount = 0
        var plan = kvcache_tier_lookup()
        try keys.withUnsafeBufferPointer { k in
            let p = k.baseAddress! + first
            try check(kvcache_tiers_prepare_store(tiers, blocks, p, n, nil, &id), "prepare_store")
            try check(kvcache_tiers_complete_store(tiers, id, &ok, n, &count), "complete_store")
            try check(kvcache_tiers_lookup(tiers, p, n, 0, Int64(n), &locations, n, &plan), "lookup")
            guard plan.host_blocks == Int64(n) else { throw TraceControlPlane.CallFailed(description: "lookup: \(plan.host_blocks) on host") }
            for i in 0 ..< n { blocks[i] = Int32(((round + 1) % 2) * n + i) }
            try check(kvcache_tiers_prepare_load(tiers, p, n, 0, blocks, n, &id), "prepare_load")
            try check(kvcache_tiers_complete_load(tiers, id, &ok, n, &count), "complete_load")
            guard count == n else { throw TraceControlPlane.CallFailed(description: "load: \(count) of \(n) blocks") }
            try check(kvcache_tiers_touch(tiers, p, n, &count), "touch")
        }
        try check(kvcache_tiers_take_events(tiers, &events, events.count, &count, &eventKeys, eventKeys.count, &keyCount),
                  "take_events")
        round += 1
    }
}
