import KVCache
import KVEvents
import KVTestSupport
import Testing

/// Cross-check of the publisher's allocation-free path: over a random serving sequence, the batches
/// `publish(from:)` sends (the manager's event log swapped out, its events built on the publisher
/// thread, lower tiers' events after the pool's) decode to exactly the events a twin manager gives
/// through `drainEvents(into: [KVEvent])`, batch by batch, and no batch is sent for a step without
/// events.
@Suite struct PublishFromManagerTests {
    /// A lower tier that records a removal of one key every third drain, the same for each instance.
    final class EveryThirdDrain: KVEventSource {
        var drains: UInt64 = 0
        func drainEvents(into out: inout [KVEvent]) {
            drains += 1
            if drains % 3 == 0 { out.append(.blockRemoved(keys: [BlockKey(lo: drains, hi: 7)], tier: .host)) }
        }
    }

    @Test(arguments: [1, 2] as [UInt64])
    func publishedBatchesAreTheDrainedEvents(seed: UInt64) throws {
        let B = 4
        let config = KVCacheConfig(blockTokens: B, capacityBlocks: 24, recordEvents: true)
        let reference = try KVCacheManager(config), published = try KVCacheManager(config)
        let sources = (EveryThirdDrain(), EveryThirdDrain())
        reference.lowerTierEvents = [sources.0]
        published.lowerTierEvents = [sources.1]
        let dir = TempDirectory("kvpubfrom")
        var c = ZmqEventPublisher.Config()
        c.endpoint = "ipc://\(dir.path)/pub"
        c.replayEndpoint = "ipc://\(dir.path)/replay"
        let publisher = try ZmqEventPublisher(c)
        defer { publisher.close() }

        var rng = SplitMix64(seed: seed)
        let prefixes: [[UInt32]] = (0 ..< 4).map { _ in (0 ..< Int.random(in: 0 ... 3 * B, using: &rng)).map { _ in UInt32.random(in: 0 ..< 30, using: &rng) } }
        var live: [SequenceID] = []
        var next: Int64 = 0
        var expected: [[KVEvent]] = []
        for _ in 0 ..< 300 {
            let op = Int.random(in: 0 ..< 100, using: &rng)
            for m in [reference, published] {   // the same step on both
                var r = rng
                var l = live, n = next
                switch op {
                case 0 ..< 40:
                    let id = SequenceID(n); n += 1
                    let suffix = (0 ..< Int.random(in: 1 ... 2 * B, using: &r)).map { _ in UInt32.random(in: 0 ..< 30, using: &r) }
                    try m.addSequence(id, prompt: prefixes.randomElement(using: &r)! + suffix)
                    let todo = try m.tokenCount(id) - m.lookup(id).cachedTokens
                    if case .allocated = try m.allocate(id, newTokens: todo) {
                        try m.commit(id, computedTokens: todo)
                        l.append(id)
                    } else { try m.free(id) }
                case 40 ..< 65:
                    guard let id = l.randomElement(using: &r) else { break }
                    try m.append(id, tokens: [UInt32.random(in: 0 ..< 30, using: &r)])
                    if case .allocated = try m.allocate(id, newTokens: 1) { try m.commit(id, computedTokens: 1) }
                case 65 ..< 70:
                    guard let p = l.randomElement(using: &r), try m.computedTokens(p) == m.tokenCount(p) else { break }
                    let child = SequenceID(n); n += 1
                    try m.fork(p, into: child)
                    l.append(child)
                case 70 ..< 98:
                    guard !l.isEmpty else { break }
                    try m.free(l.remove(at: Int.random(in: 0 ..< l.count, using: &r)))
                default:
                    for id in l { try m.free(id) }
                    l.removeAll()
                    try m.reset()
                }
                if m === published { rng = r; live = l; next = n }
            }
            var events: [KVEvent] = []
            reference.drainEvents(into: &events)
            let seq = publisher.publish(from: published)
            #expect((seq == nil) == events.isEmpty)
            if let seq {
                #expect(seq == Int64(expected.count))
                expected.append(events)
            }
        }
        #expect(expected.count > 100)

        var s = ZmqEventSubscriber.Config(endpoint: c.endpoint)
        s.replayEndpoint = c.replayEndpoint
        s.startSequence = 0
        let subscriber = try ZmqEventSubscriber(s)
        defer { subscriber.close() }
        let encoder = VLLMEventEncoder()
        for (i, events) in expected.enumerated() {
            let batch = try #require(subscriber.next(deadline: KVClock.monotonicNanos() + 120_000_000_000))
            #expect(batch.sequence == Int64(i))
            // Byte for byte but the timestamp: [array 3, float64 (0xCB + 8 bytes), events..., rank].
            let want = Array(encoder.encode(events, timestamp: 0, dataParallelRank: 0))
            #expect(batch.payload.count == want.count && batch.payload[10...] == want[10...], "batch \(i)")
            #expect(try VLLMEventDecoder.decode(batch.payload[...]).events == VLLMEventDecoder.decode(want[...]).events)
        }
    }
}
