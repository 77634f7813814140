import CZmq
import KVCache
import KVEvents
import KVTestSupport
import Testing

/// The publisher's wire protocol as vLLM's subscribers use it: three frames per batch on the PUB socket
/// with consecutive sequence numbers, and replays of the buffered batches with an end marker.
@Suite struct PublisherTests {
    /// A ZMQ socket of the test's own, closed with its context.
    final class Peer {
        let ctx = zmq_ctx_new()!
        let socket: UnsafeMutableRawPointer
        init(_ type: Int32, connect endpoint: String) {
            socket = zmq_socket(ctx, type)!
            var linger: Int32 = 0
            zmq_setsockopt(socket, ZMQ_LINGER, &linger, 4)
            if type == ZMQ_SUB { zmq_setsockopt(socket, ZMQ_SUBSCRIBE, "", 0) }
            zmq_connect(socket, endpoint)
        }
        deinit { zmq_close(socket); zmq_ctx_term(ctx) }

        /// The frames of one message, or nil after `timeoutMs` without one.
        func receive(timeoutMs: Int = 2000) -> [[UInt8]]? {
            var item = zmq_pollitem_t(socket: socket, fd: 0, events: Int16(ZMQ_POLLIN), revents: 0)
            guard zmq_poll(&item, 1, timeoutMs) > 0 else { return nil }
            var frames: [[UInt8]] = []
            var more: Int32 = 1
            while more != 0 {
                var msg = zmq_msg_t()
                zmq_msg_init(&msg)
                zmq_msg_recv(&msg, socket, 0)
                frames.append(Array(UnsafeRawBufferPointer(start: zmq_msg_data(&msg), count: zmq_msg_size(&msg))))
                zmq_msg_close(&msg)
                var size = 4
                zmq_getsockopt(socket, ZMQ_RCVMORE, &more, &size)
            }
            return frames
        }

        func send(_ frames: [[UInt8]]) {
            for (i, f) in frames.enumerated() {
                f.withUnsafeBytes { _ = zmq_send(socket, $0.baseAddress, $0.count, i + 1 < frames.count ? ZMQ_SNDMORE : 0) }
            }
        }
    }

    static func seq(_ frame: [UInt8]) -> Int64 { frame.reduce(Int64(0)) { $0 << 8 | Int64($1) } }
    static func be(_ v: Int64) -> [UInt8] { withUnsafeBytes(of: UInt64(bitPattern: v).bigEndian) { Array($0) } }
    static let batch: [KVEvent] = [.blockRemoved(keys: [BlockKey(lo: 1, hi: 2)], tier: .device)]

    @Test func liveBatchesThenReplayFromAGap() throws {
        let dir = TempDirectory("kvevents")
        var config = ZmqEventPublisher.Config()
        config.endpoint = "ipc://\(dir.path)/pub"
        config.replayEndpoint = "ipc://\(dir.path)/replay"
        config.bufferSteps = 4
        config.topic = "kv"
        let publisher = try ZmqEventPublisher(config)
        defer { publisher.close() }
        let sub = Peer(ZMQ_SUB, connect: config.endpoint)
        let dealer = Peer(ZMQ_DEALER, connect: config.replayEndpoint!)
        // The subscription reaches the publisher asynchronously: publish until the first batch arrives.
        var first: [[UInt8]]? = nil
        for _ in 0 ..< 50 where first == nil {
            publisher.publish(Self.batch, timestamp: 1)
            first = sub.receive(timeoutMs: 100)
        }
        let frames = try #require(first)
        #expect(frames.count == 3 && frames[0] == Array("kv".utf8) && frames[1].count == 8)
        var expected = Self.seq(frames[1]) + 1
        while let f = sub.receive(timeoutMs: 100) {   // batches published while the subscription travelled
            #expect(Self.seq(f[1]) == expected); expected += 1
        }
        #expect(expected == publisher.nextSequence)
        #expect(publisher.publish([KVEvent](), timestamp: 1) == nil, "an empty batch uses no number")
        for t in 0 ..< 6 { publisher.publish(Self.batch, timestamp: 2 + Double(t)) }   // six different payloads
        var live: [Int64: [UInt8]] = [:]
        for _ in 0 ..< 6 {
            let f = try #require(sub.receive())
            #expect(Self.seq(f[1]) == expected)
            live[expected] = f[2]
            expected += 1
        }
        // Only the last 4 batches are kept: a replay from before them starts at the oldest kept one.
        dealer.send([[], Self.be(0)])
        var replayed: [Int64] = []
        while let f = dealer.receive() {
            #expect(f.count == 4 && f[0].isEmpty)
            if Self.seq(f[2]) == -1 { #expect(f[1].isEmpty && f[3].isEmpty); break }
            #expect(f[1] == Array("kv".utf8))
            #expect(f[3] == live[Self.seq(f[2])], "a replayed batch carries the bytes that went out live")
            replayed.append(Self.seq(f[2]))
        }
        #expect(replayed == Array(expected - 4 ..< expected))
        // From inside the buffer: from that number on.
        dealer.send([[], Self.be(expected - 2)])
        replayed = []
        while let f = dealer.receive(), Self.seq(f[2]) != -1 { replayed.append(Self.seq(f[2])) }
        #expect(replayed == [expected - 2, expected - 1])
    }

    @Test func badEndpointsAndSettingsThrow() throws {
        let dir = TempDirectory("kvevents")
        var config = ZmqEventPublisher.Config()
        config.endpoint = "ipc://\(dir.path)/pub"
        let one = try ZmqEventPublisher(config)
        defer { one.close() }
        config.endpoint = "tcp://no-such-host-name:1"
        #expect(throws: KVEventsError.self) { try ZmqEventPublisher(config) }
        config.endpoint = "ipc://\(dir.path)/pub2"
        config.bufferSteps = 0
        #expect(throws: KVEventsError.invalidArgument("bufferSteps and hwm must be at least 1")) { try ZmqEventPublisher(config) }
    }
}
