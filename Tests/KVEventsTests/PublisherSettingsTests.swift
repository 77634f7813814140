import KVCache
import KVConfig
import KVEvents
import KVTestSupport
import Testing

/// The publisher brought up from the library's settings (`events.*`): what the keys say reaches the
/// wire (topic, data-parallel rank, the replay socket), nothing opens when events are off, and an
/// address that cannot be bound is an error naming its key.
@Suite struct PublisherSettingsTests {
    static func settings(_ dir: borrowing TempDirectory, _ more: [String: String] = [:]) throws -> KVSettings {
        try KVSettingsLoader.load(environment: [
            "KVCACHE_CAPACITY_BLOCKS": "64", "KVCACHE_EVENTS_ENABLED": "true",
            "KVCACHE_EVENTS_ENDPOINT": "ipc://\(dir.path)/pub", "KVCACHE_EVENTS_REPLAY_ENDPOINT": "ipc://\(dir.path)/replay",
            "KVCACHE_EVENTS_TOPIC": "kv", "KVCACHE_EVENTS_DATA_PARALLEL_RANK": "3", "KVCACHE_EVENTS_BUFFER_STEPS": "7",
        ].merging(more) { _, b in b })
    }

    @Test func theSettingsReachTheWire() throws {
        let dir = TempDirectory("kvpubset")
        let s = try Self.settings(dir)
        let config = ZmqEventPublisher.Config(settings: s.events)
        #expect(config.endpoint == "ipc://\(dir.path)/pub" && config.replayEndpoint == "ipc://\(dir.path)/replay")
        #expect(config.topic == "kv" && config.dataParallelRank == 3 && config.bufferSteps == 7 && config.hwm == 100_000)
        let publisher = try #require(try ZmqEventPublisher.open(settings: s))
        defer { publisher.close() }
        // The pool records events because events are enabled; the publisher drains and sends them.
        let manager = try KVCacheManager(s.cacheConfig)
        let seq = SequenceID(1)
        try manager.addSequence(seq, prompt: (0..<32).map { UInt32($0) })
        _ = try manager.lookup(seq)
        _ = try manager.allocate(seq, newTokens: 32)
        try manager.commit(seq, computedTokens: 32)
        #expect(publisher.publish(from: manager) == 0)
        var sub = ZmqEventSubscriber.Config(endpoint: s.events.endpoint)
        sub.replayEndpoint = s.events.replayEndpoint
        sub.topic = "kv"
        sub.startSequence = 0
        let subscriber = try ZmqEventSubscriber(sub)
        defer { subscriber.close() }
        let batch = try #require(subscriber.next(deadline: KVClock.monotonicNanos() + 10_000_000_000))
        let decoded = try VLLMEventDecoder.decode(batch.payload[...])
        #expect(batch.sequence == 0 && decoded.dataParallelRank == 3)
        guard case let .stored(hashes, _, blockSize, tokenIDs, medium)? = decoded.events.first else {
            Issue.record("\(decoded.events)"); return
        }
        #expect(hashes.count == 2 && blockSize == 16 && tokenIDs == 32 && medium == "GPU")
    }

    @Test func offOpensNothingAndABusyAddressNamesItsKey() throws {
        let dir = TempDirectory("kvpubset")
        #expect(try ZmqEventPublisher.open(settings: try Self.settings(dir, ["KVCACHE_EVENTS_ENABLED": "false"])) == nil)
        // Two TCP ports of our own (a taken port is tried again elsewhere).
        var g = SplitMix64(seed: KVClock.monotonicNanos())
        var first: (publisher: ZmqEventPublisher, pub: String, replay: String)?
        for _ in 0..<10 where first == nil {
            let port = Int.random(in: 20_000...60_000, using: &g)
            let pub = "tcp://127.0.0.1:\(port)", replay = "tcp://127.0.0.1:\(port + 1)"
            let s = try Self.settings(dir, ["KVCACHE_EVENTS_ENDPOINT": pub, "KVCACHE_EVENTS_REPLAY_ENDPOINT": replay])
            if let p = try? ZmqEventPublisher.open(settings: s) { first = (p, pub, replay) }
        }
        let taken = try #require(first)
        defer { taken.publisher.close() }
        for (more, key) in [(["KVCACHE_EVENTS_ENDPOINT": taken.pub, "KVCACHE_EVENTS_REPLAY_ENDPOINT": "ipc://\(dir.path)/r"], "events.endpoint"),
                            (["KVCACHE_EVENTS_ENDPOINT": "ipc://\(dir.path)/p", "KVCACHE_EVENTS_REPLAY_ENDPOINT": taken.replay],
                             "events.replay_endpoint")] {
            let error = #expect(throws: KVConfigError.self) { try ZmqEventPublisher.open(settings: try Self.settings(dir, more)) }
            #expect(error?.key == key && error?.description.contains("cannot bind") == true, "\(String(describing: error))")
        }
    }
}
