import CKVCache
import KVCache
import Testing

/// A test's view of one C handle: every call goes through the functions declared in kvcache.h
/// (linked from libkvcache_c's objects), returning the status and the out-parameters.
final class CCache {
    let handle: OpaquePointer

    init(blockTokens: Int = 4, capacity: Int, namespace: String? = nil, policy: Int32 = 0,
         prefixCaching: Bool = true, events: Bool = false) throws {
        var config = kvcache_config()
        #expect(kvcache_config_init(&config) == 0)
        config.block_tokens = Int64(blockTokens)
        config.capacity_blocks = Int64(capacity)
        config.eviction_policy = policy
        config.enable_prefix_caching = prefixCaching
        config.record_events = events
        // PGDSF's price (Llama-3-8B on one H100); the library has no default.
        config.recompute_seconds_per_token = 2.706e-5
        config.recompute_seconds_per_context_pair = 1.325e-9
        var out: OpaquePointer?
        let status = namespace.map { ns in
            ns.withCString { config.key_namespace = $0; return kvcache_create(&config, &out) }
        } ?? kvcache_create(&config, &out)
        guard status == 0, let out else { throw CStatus(status) }
        handle = out
    }

    deinit { _ = kvcache_destroy(handle) }

    func add(_ id: Int64, _ tokens: [UInt32], salt: String? = nil, lora: String? = nil) -> kvcache_status {
        tokens.withUnsafeBufferPointer { t in
            withOptionalCString(salt) { s in
                withOptionalCString(lora) { l in
                    kvcache_add_sequence(handle, id, t.baseAddress, t.count, s, l, nil, 0)
                }
            }
        }
    }

    func addKeys(_ id: Int64, _ keys: [BlockKey], promptTokens: Int64) -> kvcache_status {
        let c = keys.map { kvcache_key(lo: $0.lo, hi: $0.hi) }
        return c.withUnsafeBufferPointer { kvcache_add_sequence_keys(handle, id, $0.baseAddress, $0.count, promptTokens) }
    }

    func lookup(_ id: Int64) -> (kvcache_status, kvcache_prefix_hit) {
        var hit = kvcache_prefix_hit(cached_blocks: -1, cached_tokens: -1)
        return (kvcache_lookup(handle, id, &hit), hit)
    }

    func allocate(_ id: Int64, _ newTokens: Int64, lookahead: Int64 = 0) -> (kvcache_status, kvcache_allocation) {
        var a = kvcache_allocation(new_blocks: -1, needed_blocks: -1, available_blocks: -1)
        return (kvcache_allocate(handle, id, newTokens, lookahead, &a), a)
    }

    func commit(_ id: Int64, _ n: Int64) -> kvcache_status { kvcache_commit(handle, id, n) }

    func append(_ id: Int64, _ tokens: [UInt32]) -> kvcache_status {
        tokens.withUnsafeBufferPointer { kvcache_append_tokens(handle, id, $0.baseAddress, $0.count) }
    }

    func appendCount(_ id: Int64, _ n: Int64) -> kvcache_status { kvcache_append_count(handle, id, n) }
    func free(_ id: Int64) -> kvcache_status { kvcache_free_sequence(handle, id) }
    func fork(_ parent: Int64, _ child: Int64) -> kvcache_status { kvcache_fork(handle, parent, child) }
    func reset() -> kvcache_status { kvcache_reset(handle) }
    func validate() -> kvcache_status { kvcache_validate(handle) }

    /// The block table by the two-call protocol (length, then ids); nil for an unknown sequence.
    func blockTable(_ id: Int64) -> [BlockID]? {
        var length = -1
        let first = kvcache_block_table(handle, id, nil, 0, &length)
        if first == KVCACHE_ERR_UNKNOWN_SEQUENCE.code { return nil }
        #expect(first == 0 || first == KVCACHE_ERR_BUFFER_TOO_SMALL.code)
        var table = [BlockID](repeating: -1, count: length)
        let second = table.withUnsafeMutableBufferPointer { kvcache_block_table(handle, id, $0.baseAddress, $0.count, &length) }
        #expect(second == 0 && length == table.count)
        return table
    }

    func computedTokens(_ id: Int64) -> Int64? {
        var n: Int64 = -1
        return kvcache_computed_tokens(handle, id, &n) == 0 ? n : nil
    }

    func tokenCount(_ id: Int64) -> Int64? {
        var n: Int64 = -1
        return kvcache_token_count(handle, id, &n) == 0 ? n : nil
    }

    /// Pending copies, without draining them.
    var pendingCopies: Int {
        var n = -1
        let s = kvcache_drain_copies(handle, nil, 0, &n)
        #expect(s == 0 || s == KVCACHE_ERR_BUFFER_TOO_SMALL.code)
        return n
    }

    func drainCopies() -> [(src: BlockID, dst: BlockID)] {
        var out = [kvcache_block_copy](repeating: kvcache_block_copy(src: -1, dst: -1), count: pendingCopies)
        var n = -1
        #expect(out.withUnsafeMutableBufferPointer { kvcache_drain_copies(handle, $0.baseAddress, $0.count, &n) } == 0)
        return out.prefix(n).map { ($0.src, $0.dst) }
    }

    /// Drains every event (asking for the lengths first) into the facade's `KVEvent` form.
    func drainEvents() -> [KVEvent] {
        var nEvents = -1, nKeys = -1
        let first = kvcache_drain_events(handle, nil, 0, &nEvents, nil, 0, &nKeys)
        if first == 0 { return [] }
        #expect(first == KVCACHE_ERR_BUFFER_TOO_SMALL.code)
        var events = [kvcache_event](repeating: kvcache_event(), count: nEvents)
        var keys = [kvcache_key](repeating: kvcache_key(), count: nKeys)
        let status = events.withUnsafeMutableBufferPointer { e in
            keys.withUnsafeMutableBufferPointer { k in
                kvcache_drain_events(handle, e.baseAddress, e.count, &nEvents, k.baseAddress, k.count, &nKeys)
            }
        }
        #expect(status == 0)
        return events.map { e in
            let ks = keys[e.first_key ..< e.first_key + e.key_count].map { BlockKey(lo: $0.lo, hi: $0.hi) }
            let tier = Tier(rawValue: UInt8(e.tier))!
            switch e.kind {
            case KVCACHE_EVENT_BLOCK_STORED.code32:
                return .blockStored(keys: ks, parent: e.has_parent ? BlockKey(lo: e.parent.lo, hi: e.parent.hi) : nil,
                                    blockTokens: Int(e.block_tokens), tier: tier)
            case KVCACHE_EVENT_BLOCK_REMOVED.code32: return .blockRemoved(keys: ks, tier: tier)
            default: return .allBlocksCleared
            }
        }
    }

    var stats: kvcache_stats {
        var s = kvcache_stats()
        #expect(kvcache_get_stats(handle, &s) == 0)
        return s
    }

    var freeBlockCount: Int64 {
        var n: Int64 = -1
        #expect(kvcache_free_block_count(handle, &n) == 0)
        return n
    }

    var sequenceCount: Int64 {
        var n: Int64 = -1
        #expect(kvcache_sequence_count(handle, &n) == 0)
        return n
    }

    /// Everything observable about the cache without changing it, for "nothing changed" checks.
    func snapshot(_ ids: some Sequence<Int64>) -> Snapshot {
        Snapshot(stats: StatsValue(stats), free: freeBlockCount, sequences: sequenceCount, copies: pendingCopies,
                 tables: ids.map { blockTable($0) }, computed: ids.map { computedTokens($0) },
                 tokens: ids.map { tokenCount($0) })
    }
}

/// The observable state of a `CCache`.
struct Snapshot: Equatable {
    var stats: StatsValue
    var free: Int64
    var sequences: Int64
    var copies: Int
    var tables: [[BlockID]?]
    var computed: [Int64?]
    var tokens: [Int64?]
}

/// `kvcache_stats` as an Equatable value (C structs import without Equatable).
struct StatsValue: Equatable {
    var counts: [Int64]
    var usage: Double, hitRate: Double
    init(_ s: kvcache_stats) {
        counts = [s.capacity_blocks, s.used_blocks, s.cached_blocks, s.free_blocks, s.lookups, s.query_tokens,
                  s.hit_tokens, s.inserted_blocks, s.deduplicated_blocks, s.evicted_blocks, s.copied_blocks]
        usage = s.usage
        hitRate = s.hit_rate
    }
    init(_ s: KVCacheStats) {
        counts = [s.capacityBlocks, s.usedBlocks, s.cachedBlocks, s.freeBlocks, s.lookups, s.queryTokens,
                  s.hitTokens, s.insertedBlocks, s.deduplicatedBlocks, s.evictedBlocks, s.copiedBlocks].map(Int64.init)
        usage = s.usage
        hitRate = s.hitRate
    }
}

/// A non-OK status thrown by a test helper.
struct CStatus: Error { let status: kvcache_status; init(_ s: kvcache_status) { status = s } }

extension kvcache_status_code {
    /// The constant as the functions return it.
    var code: kvcache_status { kvcache_status(truncatingIfNeeded: rawValue) }
}

extension kvcache_event_kind {
    var code32: Int32 { Int32(truncatingIfNeeded: rawValue) }
}

func withOptionalCString<R>(_ s: String?, _ body: (UnsafePointer<CChar>?) -> R) -> R {
    guard let s else { return body(nil) }
    return s.withCString { body($0) }
}

/// The status the C ABI must return for an error of the Swift facade (written independently of
/// the library's own mapping).
func expectedStatus(_ e: KVCacheError) -> kvcache_status {
    switch e {
    case .unknownSequence: KVCACHE_ERR_UNKNOWN_SEQUENCE.code
    case .duplicateSequence: KVCACHE_ERR_DUPLICATE_SEQUENCE.code
    case .invalidBlock: KVCACHE_ERR_INVALID_BLOCK.code
    case .doubleFree: KVCACHE_ERR_DOUBLE_FREE.code
    case .blockStillReferenced: KVCACHE_ERR_BLOCK_STILL_REFERENCED.code
    case .blockNotReferenced: KVCACHE_ERR_BLOCK_NOT_REFERENCED.code
    case .insufficientBlocks: KVCACHE_ERR_INSUFFICIENT_BLOCKS.code
    case .blocksInUse: KVCACHE_ERR_BLOCKS_IN_USE.code
    case .invalidArgument: KVCACHE_ERR_INVALID_ARGUMENT.code
    }
}

/// The status of a facade call: 0, or the code of the error it threw.
func facadeStatus(_ body: () throws(KVCacheError) -> Void) -> kvcache_status {
    do { try body(); return 0 } catch { return expectedStatus(error) }
}

/// The text of `kvcache_last_error()`.
var lastError: String { String(cString: kvcache_last_error()) }
