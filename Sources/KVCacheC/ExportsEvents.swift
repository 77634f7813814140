import CKVCache
import KVCache

// The event publisher from a configuration: opened and fed through libkvcache_config.so (`ConfigLibrary`),
// which binds the ZMQ sockets and encodes vLLM's batches; this side drains the cache.

/// kvcache_events_open_from_config: the publisher of the `events:` section of the file at `path` (NULL:
/// the environment's settings) over `cache`'s events; *out is NULL when events.enabled is false. A
/// failure opens nothing. O(file).
@_cdecl("kvcache_events_open_from_config")
public func kvcacheEventsOpenFromConfigImpl(_ cache: OpaquePointer?, _ path: UnsafePointer<CChar>?,
                                            _ out: UnsafeMutablePointer<OpaquePointer?>?) -> kvcache_status {
    withHandle(cache, "kvcache_events_open_from_config") { (h) throws(CAPIError) in
        let out = try required(out, "out")
        if path != nil { _ = try utf8String(path, "path") }
        let library = try ConfigLibrary.resolve()
        var publisher: UnsafeMutableRawPointer? = nil
        try configurationCall { library.eventsOpen(path, &publisher, $0) }
        out.pointee = publisher.map { p in
            OpaquePointer(Unmanaged.passRetained(EventsHandle(cache: h, library: library, publisher: p)).toOpaque())
        }
    }
}

/// kvcache_events_add_tiers: the tier manager's events follow the cache's in every batch from now on
/// (a second call replaces the first). O(1).
@_cdecl("kvcache_events_add_tiers")
public func kvcacheEventsAddTiersImpl(_ events: OpaquePointer?, _ tiers: OpaquePointer?) -> kvcache_status {
    withHandle(events, "kvcache_events_add_tiers", as: EventsHandle.self) { (h) throws(CAPIError) in
        guard let tiers else { throw .nullHandle }
        try borrow(tiers) { (t: TierHandle) throws(CAPIError) in h.tiers = t }
    }
}

/// kvcache_events_publish: the cache's pending events as one batch. O(events + keys).
@_cdecl("kvcache_events_publish")
public func kvcacheEventsPublishImpl(_ events: OpaquePointer?, _ sequence: UnsafeMutablePointer<Int64>?) -> kvcache_status {
    withHandle(events, "kvcache_events_publish", as: EventsHandle.self) { (h) throws(CAPIError) in
        let seq = h.publish()
        sequence?.pointee = seq
    }
}

/// kvcache_events_close: publishes what is pending, closes the publisher and drops the handle's reference.
@_cdecl("kvcache_events_close")
public func kvcacheEventsCloseImpl(_ events: OpaquePointer?) -> kvcache_status {
    guard let events else { return fail(.nullHandle, "kvcache_events_close") }
    guard isHandle(events, of: EventsHandle.self) else { return fail(.wrongHandle, "kvcache_events_close") }
    let handle = Unmanaged<EventsHandle>.fromOpaque(UnsafeRawPointer(events)).takeRetainedValue()
    handle.close()
    return Status.ok
}
