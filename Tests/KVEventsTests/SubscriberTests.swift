import KVCache
import KVEvents
import KVTestSupport
import Testing

/// `ZmqEventSubscriber` against the project's own publisher: every published batch comes out once, in
/// sequence order, byte for byte what the publisher's encoder wrote, whether it arrived live or was
/// recovered by replay (a late start, or batches the PUB socket dropped for a subscriber whose queue
/// holds one message); a dead endpoint ends every wait at its deadline.
@Suite struct SubscriberTests {
    /// `n` random batches: the events and the payload bytes the publisher will send for each.
    static func batches(_ n: Int, seed: UInt64) -> [(events: [KVEvent], ts: Double, payload: [UInt8])] {
        var g = SplitMix64(seed: seed)
        let encoder = VLLMEventEncoder()
        return (0..<n).map { i in
            var events = EventRecordingTests.randomEvents(&g)
            if events.isEmpty { events = [.allBlocksCleared] }   // an empty step publishes nothing
            let ts = 1.7e9 + Double(i)
            return (events, ts, Array(encoder.encode(events, timestamp: ts, dataParallelRank: 2)))
        }
    }

    static func publisher(_ dir: borrowing TempDirectory, hwm: Int = 100_000) throws -> ZmqEventPublisher {
        var config = ZmqEventPublisher.Config()
        config.endpoint = "ipc://\(dir.path)/pub"
        config.replayEndpoint = "ipc://\(dir.path)/replay"
        config.dataParallelRank = 2
        config.hwm = hwm
        return try ZmqEventPublisher(config)
    }

    static func deadline(seconds: Double) -> UInt64 { KVClock.monotonicNanos() + UInt64(seconds * 1e9) }

    /// Reads until `count` batches came or 120 s passed (a bound for a failing run only: on a loaded
    /// machine the replays of a 400-batch burst took over 20 s while the whole suite ran in parallel).
    static func read(_ subscriber: ZmqEventSubscriber, count: Int) -> [ZmqEventSubscriber.Batch] {
        var got: [ZmqEventSubscriber.Batch] = []
        let end = deadline(seconds: 120)
        while got.count < count, let b = subscriber.next(deadline: end) { got.append(b) }
        return got
    }

    @Test func aLateSubscriberGetsEveryBatchByReplayThenLive() throws {
        let dir = TempDirectory("kvsub")
        let publisher = try Self.publisher(dir)
        defer { publisher.close() }
        let sent = Self.batches(60, seed: 1)
        for b in sent.prefix(30) { publisher.publish(b.events, timestamp: b.ts) }
        var config = ZmqEventSubscriber.Config(endpoint: "ipc://\(dir.path)/pub")
        config.replayEndpoint = "ipc://\(dir.path)/replay"
        config.startSequence = 0
        let subscriber = try ZmqEventSubscriber(config)
        defer { subscriber.close() }
        var got = Self.read(subscriber, count: 30)
        for b in sent.suffix(30) { publisher.publish(b.events, timestamp: b.ts) }
        got += Self.read(subscriber, count: 30)
        #expect(got.map(\.sequence) == Array(0..<60))
        #expect(got.map(\.payload) == sent.map(\.payload))
        // The decoded batches are the published events.
        for (b, s) in zip(got, sent) {
            let batch = try VLLMEventDecoder.decode(b.payload[...])
            #expect(batch.timestamp == s.ts && batch.dataParallelRank == 2 && batch.events.count == s.events.count)
        }
        #expect(subscriber.figures.lost == 0 && subscriber.figures.malformed == 0)
        #expect(subscriber.figures.live + subscriber.figures.replayed == 60)
    }

    @Test(arguments: [UInt64(2), 3])
    func batchesDroppedByTheSocketAreRecoveredInOrder(seed: UInt64) throws {
        let dir = TempDirectory("kvsub")
        let publisher = try Self.publisher(dir, hwm: 1)
        defer { publisher.close() }
        var config = ZmqEventSubscriber.Config(endpoint: "ipc://\(dir.path)/pub")
        config.replayEndpoint = "ipc://\(dir.path)/replay"
        config.startSequence = 0
        config.receiveHighWaterMark = 1
        let subscriber = try ZmqEventSubscriber(config)
        defer { subscriber.close() }
        // The subscriber's first replay (nothing yet) lets both sockets connect before the burst.
        #expect(subscriber.next(deadline: Self.deadline(seconds: 0.3)) == nil)
        let sent = Self.batches(400, seed: seed)
        for b in sent { publisher.publish(b.events, timestamp: b.ts) }
        let got = Self.read(subscriber, count: sent.count)
        #expect(got.map(\.sequence) == Array(0..<Int64(sent.count)))
        #expect(got.map(\.payload) == sent.map(\.payload))
        let f = subscriber.figures
        #expect(f.lost == 0 && f.live + f.replayed == sent.count)
        // A burst of 400 into queues of one message drops batches: the replay path ran.
        #expect(f.replayed > 0 && f.replayRequests > 1, "\(f)")
    }

    @Test func aDeadEndpointEndsEveryWaitAtItsDeadline() throws {
        let dir = TempDirectory("kvsub")
        var config = ZmqEventSubscriber.Config(endpoint: "ipc://\(dir.path)/nobody")
        config.replayEndpoint = "ipc://\(dir.path)/nobody-replay"
        config.startSequence = 0
        config.replayTimeout = 0.2
        let subscriber = try ZmqEventSubscriber(config)
        let start = KVClock.monotonicNanos()
        #expect(subscriber.next(deadline: Self.deadline(seconds: 0.5)) == nil)
        #expect(KVClock.monotonicNanos() - start < 10_000_000_000)
        #expect(subscriber.figures.unansweredReplays == 1 && subscriber.figures.replayRequests == 1)
        subscriber.close()
        #expect(subscriber.next(deadline: Self.deadline(seconds: 5)) == nil)
        // Settings out of range change nothing and say which.
        var bad = ZmqEventSubscriber.Config(endpoint: "ipc://\(dir.path)/x")
        bad.startSequence = 0
        #expect(throws: KVEventsError.invalidArgument("a start sequence needs a replay endpoint")) { try ZmqEventSubscriber(bad) }
        #expect { try ZmqEventSubscriber(.init(endpoint: "nonsense")) } throws: {
            if case .connect(let endpoint, _)? = $0 as? KVEventsError { endpoint == "nonsense" } else { false }
        }
    }
}
