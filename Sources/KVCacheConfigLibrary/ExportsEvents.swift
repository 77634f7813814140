import CKVCache
import Glibc
import KVCache
import KVConfig
import KVEvents

// libkvcache_config.so's half of the event publisher (kvcache_config_library.h): a `ZmqEventPublisher`
// bound where `events:` says, fed the C ABI's events of libkvcache_c.so's cache.

/// What the publisher pointer handed to libkvcache_c.so points to: the publisher and the events of
/// the batch being rebuilt (capacity kept between batches).
final class PublisherBox {
    let publisher: ZmqEventPublisher
    var events: [KVEvent] = []

    init(_ publisher: ZmqEventPublisher) { self.publisher = publisher }
}

/// kvcache_config_library_events_open: the publisher of the settings `path` names (nil: the
/// environment's), NULL when `events.enabled` is false; -1 and the sentence in `error` on a bad key or an
/// address that cannot be bound. O(file).
@_cdecl("kvcache_config_library_events_open")
public func kvcacheConfigLibraryEventsOpenImpl(_ path: UnsafePointer<CChar>?,
                                               _ out: UnsafeMutablePointer<UnsafeMutableRawPointer?>?,
                                               _ error: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    guard let out else { return -1 }
    return withSettings(path, error) { (settings) throws(KVConfigError) in
        out.pointee = try ZmqEventPublisher.open(settings: settings).map { Unmanaged.passRetained(PublisherBox($0)).toOpaque() }
    }
}

/// kvcache_config_library_events_publish: rebuilds the `KVEvent`s of the C events and queues them as one
/// batch stamped now; the batch's sequence number, or -1 for none. O(events + keys + tokens).
@_cdecl("kvcache_config_library_events_publish")
public func kvcacheConfigLibraryEventsPublishImpl(_ publisher: UnsafeMutableRawPointer?,
                                                  _ events: UnsafePointer<kvcache_config_library_event>?, _ count: Int,
                                                  _ keys: UnsafePointer<kvcache_key>?,
                                                  _ tokens: UnsafePointer<UInt32>?) -> Int64 {
    guard let publisher, let events, count > 0 else { return -1 }
    let box = Unmanaged<PublisherBox>.fromOpaque(publisher).takeUnretainedValue()
    box.events.removeAll(keepingCapacity: true)
    for e in UnsafeBufferPointer(start: events, count: count) {
        box.events.append(KVEvent(e, keys: keys, tokens: tokens))
    }
    return box.publisher.publish(box.events, timestamp: ZmqEventPublisher.now()) ?? -1
}

/// kvcache_config_library_events_close: sends what is queued and closes the publisher.
@_cdecl("kvcache_config_library_events_close")
public func kvcacheConfigLibraryEventsCloseImpl(_ publisher: UnsafeMutableRawPointer?) {
    guard let publisher else { return }
    let box = Unmanaged<PublisherBox>.fromOpaque(publisher).takeRetainedValue()
    box.publisher.close()
}

extension KVEvent {
    /// The event a C event describes, its keys and tokens read from the batch's arrays. O(keys + tokens).
    init(_ e: kvcache_config_library_event, keys: UnsafePointer<kvcache_key>?, tokens: UnsafePointer<UInt32>?) {
        let blockKeys = (0 ..< e.event.key_count).map { i in
            let k = keys![e.event.first_key + i]   // non-nil: the sender passes the keys its events index
            return BlockKey(lo: k.lo, hi: k.hi)
        }
        let tier = Tier(rawValue: UInt8(truncatingIfNeeded: e.event.tier)) ?? .device
        switch Int(e.event.kind) {
        case Int(KVCACHE_EVENT_BLOCK_STORED.rawValue):
            let ids = e.token_count == 0 ? [] : Array(UnsafeBufferPointer(start: tokens! + e.first_token, count: e.token_count))
            self = .blockStored(keys: blockKeys, parent: e.event.has_parent ? BlockKey(lo: e.event.parent.lo, hi: e.event.parent.hi) : nil,
                                blockTokens: Int(e.event.block_tokens), tier: tier, tokens: ids)
        case Int(KVCACHE_EVENT_BLOCK_REMOVED.rawValue): self = .blockRemoved(keys: blockKeys, tier: tier)
        default: self = .allBlocksCleared
        }
    }
}
