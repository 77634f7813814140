import CKVCache
import KVCache

// What the engine and the server read back: block tables, pending copies, events, counters; and
// the cache-wide calls (reset, validate). See kvcache.h for the contract of each.

/// kvcache_block_table: length first, then the ids if they fit. O(table length).
@_cdecl("kvcache_block_table")
public func kvcacheBlockTableImpl(_ cache: OpaquePointer?, _ id: Int64, _ out: UnsafeMutablePointer<Int32>?,
                                  _ capacity: Int, _ length: UnsafeMutablePointer<Int>?) -> kvcache_status {
    sequenceList(cache, id, out, capacity, length, "kvcache_block_table") { (m, seq) throws(KVCacheError) in
        try m.blockTable(seq)
    }
}

/// kvcache_prompt_keys: length first, then the keys if they fit. O(prompt blocks).
@_cdecl("kvcache_prompt_keys")
public func kvcachePromptKeysImpl(_ cache: OpaquePointer?, _ id: Int64, _ out: UnsafeMutablePointer<kvcache_key>?,
                                  _ capacity: Int, _ length: UnsafeMutablePointer<Int>?) -> kvcache_status {
    sequenceList(cache, id, out, capacity, length, "kvcache_prompt_keys") { (m, seq) throws(KVCacheError) in
        try m.promptKeys(seq).map { kvcache_key(lo: $0.lo, hi: $0.hi) }
    }
}

/// One per-sequence list of the facade into a caller buffer: `length` is always set to the list's
/// length, then the items are copied when `capacity` holds them (`BUFFER_TOO_SMALL` and nothing
/// written otherwise). O(items).
@inline(__always)
private func sequenceList<T>(_ cache: OpaquePointer?, _ id: Int64, _ out: UnsafeMutablePointer<T>?, _ capacity: Int,
                             _ length: UnsafeMutablePointer<Int>?, _ function: StaticString,
                             _ read: (KVCacheManager, SequenceID) throws(KVCacheError) -> [T]) -> kvcache_status {
    withHandle(cache, function) { (h) throws(CAPIError) in
        let length = try required(length, "length")
        let out = try outputBuffer(out, capacity: capacity, "out")
        let items = try lift { () throws(KVCacheError) in try read(h.manager, SequenceID(id)) }
        length.pointee = items.count
        try requireRoom(items.count, capacity: capacity, "out")
        guard let out else { return }  // nothing into an empty buffer
        items.withUnsafeBufferPointer { t in
            guard let src = t.baseAddress else { return }
            out.update(from: src, count: t.count)
        }
    }
}

/// kvcache_computed_tokens. O(1).
@_cdecl("kvcache_computed_tokens")
public func kvcacheComputedTokensImpl(_ cache: OpaquePointer?, _ id: Int64,
                                      _ out: UnsafeMutablePointer<Int64>?) -> kvcache_status {
    sequenceCount(cache, id, out, "kvcache_computed_tokens") { (m, seq) throws(KVCacheError) in try m.computedTokens(seq) }
}

/// kvcache_token_count. O(1).
@_cdecl("kvcache_token_count")
public func kvcacheTokenCountImpl(_ cache: OpaquePointer?, _ id: Int64,
                                  _ out: UnsafeMutablePointer<Int64>?) -> kvcache_status {
    sequenceCount(cache, id, out, "kvcache_token_count") { (m, seq) throws(KVCacheError) in try m.tokenCount(seq) }
}

/// One per-sequence count of the facade into `out`.
@inline(__always)
private func sequenceCount(_ cache: OpaquePointer?, _ id: Int64, _ out: UnsafeMutablePointer<Int64>?,
                           _ function: StaticString,
                           _ read: (KVCacheManager, SequenceID) throws(KVCacheError) -> Int) -> kvcache_status {
    withHandle(cache, function) { (h) throws(CAPIError) in
        let out = try required(out, "out")
        out.pointee = Int64(try lift { () throws(KVCacheError) in try read(h.manager, SequenceID(id)) })
    }
}

/// kvcache_drain_copies: all pending copies or none. O(pending); allocates nothing.
@_cdecl("kvcache_drain_copies")
public func kvcacheDrainCopiesImpl(_ cache: OpaquePointer?, _ out: UnsafeMutablePointer<kvcache_block_copy>?,
                                   _ capacity: Int, _ count: UnsafeMutablePointer<Int>?) -> kvcache_status {
    withHandle(cache, "kvcache_drain_copies") { (h) throws(CAPIError) in
        let count = try required(count, "count")
        let out = try outputBuffer(out, capacity: capacity, "out")
        let pending = h.manager.pendingCopyCount
        count.pointee = pending
        try requireRoom(pending, capacity: capacity, "out")
        guard let out else { return }  // nothing pending, empty buffer
        var i = 0
        h.manager.drainCopies { src, dst in
            out[i] = kvcache_block_copy(src: src, dst: dst)
            i += 1
        }
    }
}

/// kvcache_drain_events: moves the manager's events into the handle's staging list, then hands
/// over the whole list or, when a buffer is too short, nothing. O(events + keys).
@_cdecl("kvcache_drain_events")
public func kvcacheDrainEventsImpl(_ cache: OpaquePointer?,
                                   _ events: UnsafeMutablePointer<kvcache_event>?, _ eventsCapacity: Int,
                                   _ eventCount: UnsafeMutablePointer<Int>?,
                                   _ keys: UnsafeMutablePointer<kvcache_key>?, _ keysCapacity: Int,
                                   _ keyCount: UnsafeMutablePointer<Int>?) -> kvcache_status {
    withHandle(cache, "kvcache_drain_events") { (h) throws(CAPIError) in
        try handOverEvents(&h.stagedEvents, from: h.manager.drainEvents(into:), events, eventsCapacity, eventCount,
                           keys, keysCapacity, keyCount)
    }
}

/// The event hand-over of kvcache_drain_events and kvcache_tiers_take_events: checks the caller's
/// pointers, moves the source's events into `staged`, then hands over the whole list or, when a buffer
/// is too short, nothing (the counts say what is pending). O(events + keys).
func handOverEvents(_ staged: inout [KVEvent], from drain: (inout [KVEvent]) -> Void,
                    _ events: UnsafeMutablePointer<kvcache_event>?, _ eventsCapacity: Int,
                    _ eventCount: UnsafeMutablePointer<Int>?,
                    _ keys: UnsafeMutablePointer<kvcache_key>?, _ keysCapacity: Int,
                    _ keyCount: UnsafeMutablePointer<Int>?) throws(CAPIError) {
    let eventCount = try required(eventCount, "event_count")
    let keyCount = try required(keyCount, "key_count")
    let eventsOut = try outputBuffer(events, capacity: eventsCapacity, "events")
    let keysOut = try outputBuffer(keys, capacity: keysCapacity, "keys")
    drain(&staged)
    let neededKeys = staged.reduce(0) { $0 + $1.keys.count }
    eventCount.pointee = staged.count
    keyCount.pointee = neededKeys
    try requireRoom(staged.count, capacity: eventsCapacity, "events")
    try requireRoom(neededKeys, capacity: keysCapacity, "keys")
    var k = 0
    for (i, event) in staged.enumerated() {
        eventsOut![i] = kvcache_event(event, firstKey: k)  // non-nil: capacity >= count > i
        for key in event.keys {
            keysOut![k] = kvcache_key(lo: key.lo, hi: key.hi)  // non-nil: capacity >= total > k
            k += 1
        }
    }
    staged.removeAll(keepingCapacity: true)
}

/// kvcache_get_stats. O(1).
@_cdecl("kvcache_get_stats")
public func kvcacheGetStatsImpl(_ cache: OpaquePointer?, _ out: UnsafeMutablePointer<kvcache_stats>?) -> kvcache_status {
    withHandle(cache, "kvcache_get_stats") { (h) throws(CAPIError) in
        let out = try required(out, "out")
        let s = h.manager.stats
        out.pointee = kvcache_stats(
            capacity_blocks: Int64(s.capacityBlocks), used_blocks: Int64(s.usedBlocks),
            cached_blocks: Int64(s.cachedBlocks), free_blocks: Int64(s.freeBlocks), lookups: Int64(s.lookups),
            query_tokens: Int64(s.queryTokens), hit_tokens: Int64(s.hitTokens),
            inserted_blocks: Int64(s.insertedBlocks), deduplicated_blocks: Int64(s.deduplicatedBlocks),
            evicted_blocks: Int64(s.evictedBlocks), copied_blocks: Int64(s.copiedBlocks),
            usage: s.usage, hit_rate: s.hitRate)
    }
}

/// kvcache_block_tokens. O(1).
@_cdecl("kvcache_block_tokens")
public func kvcacheBlockTokensImpl(_ cache: OpaquePointer?, _ out: UnsafeMutablePointer<Int64>?) -> kvcache_status {
    withHandle(cache, "kvcache_block_tokens") { (h) throws(CAPIError) in
        try required(out, "out").pointee = Int64(h.manager.blockTokens)
    }
}

/// kvcache_free_block_count. O(1).
@_cdecl("kvcache_free_block_count")
public func kvcacheFreeBlockCountImpl(_ cache: OpaquePointer?, _ out: UnsafeMutablePointer<Int64>?) -> kvcache_status {
    withHandle(cache, "kvcache_free_block_count") { (h) throws(CAPIError) in
        try required(out, "out").pointee = Int64(h.manager.freeBlockCount)
    }
}

/// kvcache_sequence_count. O(1).
@_cdecl("kvcache_sequence_count")
public func kvcacheSequenceCountImpl(_ cache: OpaquePointer?, _ out: UnsafeMutablePointer<Int64>?) -> kvcache_status {
    withHandle(cache, "kvcache_sequence_count") { (h) throws(CAPIError) in
        try required(out, "out").pointee = Int64(h.manager.sequenceCount)
    }
}

/// kvcache_reset. O(capacity).
@_cdecl("kvcache_reset")
public func kvcacheResetImpl(_ cache: OpaquePointer?) -> kvcache_status {
    withHandle(cache, "kvcache_reset") { (h) throws(CAPIError) in
        try lift { () throws(KVCacheError) in try h.manager.reset() }
    }
}

/// kvcache_validate. O(capacity + block tables).
@_cdecl("kvcache_validate")
public func kvcacheValidateImpl(_ cache: OpaquePointer?) -> kvcache_status {
    withHandle(cache, "kvcache_validate") { (h) throws(CAPIError) in
        do throws(InvariantViolation) { try h.manager.validate() } catch { throw .invariantViolation(error.description) }
    }
}

extension KVEvent {
    /// The keys an event carries, in order (none for `allBlocksCleared`).
    var keys: [BlockKey] {
        switch self {
        case .blockStored(let keys, _, _, _, _), .blockRemoved(let keys, _): keys
        case .allBlocksCleared: []
        }
    }
}

extension kvcache_event {
    /// The C form of `event`, whose keys start at `firstKey` of the caller's key buffer.
    init(_ event: KVEvent, firstKey: Int) {
        let none = kvcache_key(lo: 0, hi: 0)
        switch event {
        case .blockStored(let keys, let parent, let blockTokens, let tier, _):
            self.init(kind: EventCode.stored, tier: Int32(tier.rawValue), block_tokens: Int64(blockTokens),
                      parent: parent.map { kvcache_key(lo: $0.lo, hi: $0.hi) } ?? none, has_parent: parent != nil,
                      first_key: firstKey, key_count: keys.count)
        case .blockRemoved(let keys, let tier):
            self.init(kind: EventCode.removed, tier: Int32(tier.rawValue), block_tokens: 0, parent: none,
                      has_parent: false, first_key: firstKey, key_count: keys.count)
        case .allBlocksCleared:
            self.init(kind: EventCode.cleared, tier: Int32(Tier.device.rawValue), block_tokens: 0, parent: none,
                      has_parent: false, first_key: firstKey, key_count: 0)
        }
    }
}

/// The header's `enum kvcache_event_kind` values.
enum EventCode {
    static var stored: Int32 { Int32(truncatingIfNeeded: KVCACHE_EVENT_BLOCK_STORED.rawValue) }
    static var removed: Int32 { Int32(truncatingIfNeeded: KVCACHE_EVENT_BLOCK_REMOVED.rawValue) }
    static var cleared: Int32 { Int32(truncatingIfNeeded: KVCACHE_EVENT_ALL_BLOCKS_CLEARED.rawValue) }
}
