import CKVCache
import KVCache

/// What a `kvcache_events_t *` points to: a publisher of libkvcache_config.so (an opaque pointer and
/// the library's functions), the cache whose events it publishes and optionally a tier manager's
/// (both retained: the publisher keeps them alive), and the batch's C arrays, whose capacity is kept
/// between batches.
///
/// Contract: `publish()` drains the cache's events (those kvcache_drain_events staged first, in
/// order), then the tiers' (kvcache_tiers_take_events staged first), and hands them to the
/// configuration library as one batch; after `close()` nothing is published and the library's
/// publisher is freed. Single-threaded, like the cache. O(events + keys + tokens) per batch; no
/// allocation here once the arrays have grown.
final class EventsHandle {
    let cache: CacheHandle
    /// The tier manager whose events follow the cache's in each batch (`kvcache_events_add_tiers`).
    var tiers: TierHandle?
    private let library: ConfigLibrary
    private var publisher: UnsafeMutableRawPointer?
    private var drained: [KVEvent] = []
    private var events: [kvcache_config_library_event] = []
    private var keys: [kvcache_key] = []
    private var tokens: [UInt32] = []

    init(cache: CacheHandle, library: ConfigLibrary, publisher: UnsafeMutableRawPointer) {
        self.cache = cache
        self.library = library
        self.publisher = publisher
    }

    deinit { close() }

    /// Queues the cache's pending events as one batch: its sequence number, or -1 when there were none
    /// (or the handle is closed).
    func publish() -> Int64 {
        guard let publisher else { return -1 }
        drained.removeAll(keepingCapacity: true)
        swap(&drained, &cache.stagedEvents)
        cache.manager.drainEvents(into: &drained)
        events.removeAll(keepingCapacity: true)
        keys.removeAll(keepingCapacity: true)
        tokens.removeAll(keepingCapacity: true)
        for event in drained {
            var e = kvcache_config_library_event(event: kvcache_event(event, firstKey: keys.count), first_token: tokens.count,
                                                 token_count: 0)
            switch event {
            case .blockStored(let k, _, _, _, let ids):
                for key in k { keys.append(kvcache_key(lo: key.lo, hi: key.hi)) }
                tokens.append(contentsOf: ids)
                e.token_count = ids.count
            case .blockRemoved(let k, _):
                for key in k { keys.append(kvcache_key(lo: key.lo, hi: key.hi)) }
            case .allBlocksCleared: break
            }
            events.append(e)
        }
        drained.removeAll(keepingCapacity: true)
        if let tiers {
            tiers.manager.drainEvents(into: &tiers.stagedEvents)
            let blockTokens = Int64(tiers.manager.layout.blockTokens)
            for e in tiers.stagedEvents {
                events.append(kvcache_config_library_event(event: kvcache_event(e, blockTokens: blockTokens, firstKey: keys.count),
                                                           first_token: tokens.count, token_count: 0))
                keys.append(kvcache_key(lo: e.key.lo, hi: e.key.hi))
            }
            tiers.stagedEvents.removeAll(keepingCapacity: true)
        }
        guard !events.isEmpty else { return -1 }
        return keys.withUnsafeBufferPointer { k in
            tokens.withUnsafeBufferPointer { t in
                library.eventsPublish(publisher, events, events.count, k.baseAddress, t.baseAddress)
            }
        }
    }

    /// Publishes what is pending, then closes the library's publisher. Idempotent.
    func close() {
        guard let publisher else { return }
        _ = publish()
        library.eventsClose(publisher)
        self.publisher = nil
    }
}
