import CZmq
import Glibc
import KVCache

/// Subscribes to a KV-event publisher that speaks vLLM's protocol (`ZmqEventPublisher`, or vLLM's own)
/// and hands its batches out in sequence order, recovering the ones it missed from the publisher's
/// replay socket when it has one:
///
/// - a SUB socket connected to `endpoint` receives `[topic, seq (8 bytes BE), payload]`;
/// - when a batch's number is past the next one expected (a gap: the PUB queue dropped batches, or the
///   subscriber joined late and asked for the earlier ones with `startSequence`), a DEALER socket
///   connected to `replayEndpoint` sends `["", start seq]` and reads `["", topic, seq, payload]` up to
///   the end marker `["", "", -1, ""]`; what the publisher no longer keeps counts as `lost`;
/// - batches dropped at the end of a burst leave no gap for a later live batch to show, so after
///   `idleReplaySeconds` without a live batch or a replay the DEALER also asks for what follows the last
///   batch handed out (an answer of only the end marker means nothing was missed);
/// - a batch numbered before the next one expected (a replayed batch seen live too) is a duplicate and
///   skipped; a message that is not three frames with an 8-byte number is counted as `malformed`.
///
/// Every wait is bounded: `next(deadline:)` returns nil at its deadline, and a replay answer is awaited
/// at most `replayTimeout` seconds (the DEALER socket is then replaced, so a late answer cannot be
/// taken for the next one's). The payloads are returned as received, unread. Not thread-safe: one
/// caller. O(payload) per batch.
public final class ZmqEventSubscriber {
    public struct Config: Sendable {
        /// The publisher's PUB address (`tcp://host:5557`...).
        public var endpoint: String
        /// The publisher's replay (ROUTER) address, or nil: gaps are then counted as lost.
        public var replayEndpoint: String? = nil
        /// Subscribe to messages whose topic starts with this ("" for all).
        public var topic = ""
        /// With `replayEndpoint`: first ask for every batch from this number (0: all the publisher keeps),
        /// before live ones. nil: start with the first live batch.
        public var startSequence: Int64? = nil
        /// Seconds to wait for a replay's answer.
        public var replayTimeout = 2.0
        /// With `replayEndpoint`: seconds of silence after which the replay socket is asked for anything
        /// past the last batch (0, negative or not finite: never).
        public var idleReplaySeconds = 1.0
        /// Messages the SUB socket queues before the publisher drops some for it (then recovered by replay).
        public var receiveHighWaterMark = 1_000_000
        public init(endpoint: String) { self.endpoint = endpoint }
    }

    /// One batch as published.
    public struct Batch: Sendable, Equatable {
        public var sequence: Int64
        public var payload: [UInt8]
        /// Recovered from the replay socket rather than received live.
        public var replayed: Bool
    }

    /// What the subscription saw so far.
    public struct Figures: Sendable, Equatable {
        public var live = 0
        public var replayed = 0
        public var duplicates = 0
        /// Sequence numbers skipped and not recovered.
        public var lost: Int64 = 0
        public var malformed = 0
        public var replayRequests = 0
        /// Replay requests with no end marker within `replayTimeout`.
        public var unansweredReplays = 0
    }

    public let config: Config
    public private(set) var figures = Figures()
    private let context: UnsafeMutableRawPointer
    private let sub: UnsafeMutableRawPointer
    private var dealer: UnsafeMutableRawPointer?
    private var expected: Int64?
    private var pending: [Batch] = []
    private var pendingStart = 0
    private var startAsked = false
    /// When the last live batch or replay answer came (`KVClock.monotonicNanos`).
    private var lastHeard = KVClock.monotonicNanos()
    private var closed = false

    public init(_ config: Config) throws(KVEventsError) {
        guard config.replayTimeout.isFinite, config.replayTimeout > 0 else {
            throw .invalidArgument("replayTimeout must be > 0 seconds")
        }
        guard config.receiveHighWaterMark >= 1 else { throw .invalidArgument("receiveHighWaterMark must be at least 1") }
        guard config.startSequence == nil || config.replayEndpoint != nil else {
            throw .invalidArgument("a start sequence needs a replay endpoint")
        }
        guard (config.startSequence ?? 0) >= 0 else { throw .invalidArgument("the start sequence must be >= 0") }
        guard let ctx = zmq_ctx_new() else { throw .socket(ZmqEventPublisher.lastError()) }
        guard let sub = zmq_socket(ctx, ZMQ_SUB) else {
            zmq_ctx_term(ctx)
            throw .socket(ZmqEventPublisher.lastError())
        }
        var linger: Int32 = 0, hwm = Int32(clamping: config.receiveHighWaterMark)
        zmq_setsockopt(sub, ZMQ_LINGER, &linger, MemoryLayout<Int32>.size)
        zmq_setsockopt(sub, ZMQ_RCVHWM, &hwm, MemoryLayout<Int32>.size)
        let topic = Array(config.topic.utf8)
        _ = topic.withUnsafeBytes { zmq_setsockopt(sub, ZMQ_SUBSCRIBE, $0.baseAddress, $0.count) }
        if zmq_connect(sub, config.endpoint) != 0 {
            let reason = ZmqEventPublisher.lastError()
            zmq_close(sub); zmq_ctx_term(ctx)
            throw .connect(endpoint: config.endpoint, reason: reason)
        }
        self.config = config
        context = ctx
        self.sub = sub
        if let endpoint = config.replayEndpoint {
            do { dealer = try Self.dealer(ctx, endpoint) } catch {
                zmq_close(sub); zmq_ctx_term(ctx)
                throw error
            }
        }
    }

    deinit { close() }

    /// Closes the sockets; `next` returns nil afterwards. Idempotent.
    public func close() {
        guard !closed else { return }
        closed = true
        if let dealer { zmq_close(dealer) }
        zmq_close(sub)
        zmq_ctx_term(context)
    }

    /// The next batch in sequence order, waiting for it until `deadline` (`KVClock.monotonicNanos`);
    /// nil when none came by then.
    public func next(deadline: UInt64) -> Batch? {
        while !closed {
            if pendingStart < pending.count {
                defer {
                    pendingStart += 1
                    if pendingStart == pending.count { pending.removeAll(keepingCapacity: true); pendingStart = 0 }
                }
                return pending[pendingStart]
            }
            if let start = config.startSequence, !startAsked {
                startAsked = true
                expected = start
                recover(deadline: deadline)
                continue
            }
            guard let wait = Self.milliseconds(until: deadline) else { return nil }
            let probe = idleProbeDeadline
            if let probe, KVClock.monotonicNanos() >= probe {
                recover(deadline: deadline)
                continue
            }
            var item = zmq_pollitem_t(socket: sub, fd: 0, events: Int16(ZMQ_POLLIN), revents: 0)
            let until = probe.flatMap { Self.milliseconds(until: $0) }.map { min($0, wait) } ?? wait
            guard zmq_poll(&item, 1, until) > 0, let frames = Self.receive(sub) else { continue }
            lastHeard = KVClock.monotonicNanos()
            guard frames.count == 3, frames[1].count == 8 else { figures.malformed += 1; continue }
            let seq = Self.sequence(frames[1])
            let next = expected ?? seq
            if seq < next { figures.duplicates += 1; continue }
            if seq > next {
                expected = next
                if dealer != nil { recover(deadline: deadline) }
                let after = expected ?? next
                if seq < after { figures.duplicates += 1; continue }
                figures.lost += seq - after
            }
            figures.live += 1
            expected = seq + 1
            pending.append(Batch(sequence: seq, payload: frames[2], replayed: false))
        }
        return nil
    }

    /// When to ask the replay socket for what follows the last batch, if no live batch comes first: nil
    /// without a replay socket, a known position or a positive `idleReplaySeconds`.
    private var idleProbeDeadline: UInt64? {
        let idle = config.idleReplaySeconds
        guard dealer != nil, expected != nil, idle.isFinite, idle > 0 else { return nil }
        return lastHeard &+ UInt64(min(idle, 1e9) * 1e9)
    }

    /// Asks the replay socket for every batch from `expected` and queues the ones that continue the
    /// sequence, counting what the publisher no longer had as lost. Waits at most `replayTimeout`
    /// (and not past `deadline`).
    private func recover(deadline: UInt64) {
        defer { lastHeard = KVClock.monotonicNanos() }
        guard let socket = dealer, let from = expected else { return }
        figures.replayRequests += 1
        var startBE = UInt64(bitPattern: from).bigEndian
        let sent = zmq_send(socket, nil, 0, ZMQ_SNDMORE | ZMQ_DONTWAIT) == 0
            && withUnsafeBytes(of: &startBE, { zmq_send(socket, $0.baseAddress, 8, ZMQ_DONTWAIT) }) == 8
        let limit = min(deadline, KVClock.monotonicNanos() &+ UInt64(config.replayTimeout * 1e9))
        var answered = false
        while sent, let wait = Self.milliseconds(until: limit) {
            var item = zmq_pollitem_t(socket: socket, fd: 0, events: Int16(ZMQ_POLLIN), revents: 0)
            guard zmq_poll(&item, 1, wait) > 0, let frames = Self.receive(socket) else { continue }
            guard frames.count == 4, frames[2].count == 8 else { figures.malformed += 1; continue }
            let seq = Self.sequence(frames[2])
            if seq == -1 { answered = true; break }
            let next = expected ?? seq
            if seq < next { continue }
            figures.lost += seq - next
            figures.replayed += 1
            expected = seq + 1
            pending.append(Batch(sequence: seq, payload: frames[3], replayed: true))
        }
        guard !answered else { return }
        figures.unansweredReplays += 1
        // A late answer must not be read as the next request's: start over with a fresh socket.
        zmq_close(socket)
        dealer = try? Self.dealer(context, config.replayEndpoint!)
    }

    private static func dealer(_ context: UnsafeMutableRawPointer, _ endpoint: String) throws(KVEventsError) -> UnsafeMutableRawPointer {
        guard let d = zmq_socket(context, ZMQ_DEALER) else { throw .socket(ZmqEventPublisher.lastError()) }
        var linger: Int32 = 0, hwm: Int32 = 1_000_000
        zmq_setsockopt(d, ZMQ_LINGER, &linger, MemoryLayout<Int32>.size)
        zmq_setsockopt(d, ZMQ_RCVHWM, &hwm, MemoryLayout<Int32>.size)
        guard zmq_connect(d, endpoint) == 0 else {
            let reason = ZmqEventPublisher.lastError()
            zmq_close(d)
            throw .connect(endpoint: endpoint, reason: reason)
        }
        return d
    }

    /// The frames of one waiting message, or nil when none is waiting.
    private static func receive(_ socket: UnsafeMutableRawPointer) -> [[UInt8]]? {
        var frames: [[UInt8]] = []
        var more: Int32 = 1
        while more != 0 {
            var msg = zmq_msg_t()
            zmq_msg_init(&msg)
            defer { zmq_msg_close(&msg) }
            guard zmq_msg_recv(&msg, socket, frames.isEmpty ? ZMQ_DONTWAIT : 0) >= 0 else { return frames.isEmpty ? nil : frames }
            let n = zmq_msg_size(&msg)
            frames.append(n == 0 ? [] : Array(UnsafeRawBufferPointer(start: zmq_msg_data(&msg), count: n)))
            var size = MemoryLayout<Int32>.size
            zmq_getsockopt(socket, ZMQ_RCVMORE, &more, &size)
        }
        return frames
    }

    private static func sequence(_ bytes: [UInt8]) -> Int64 {
        Int64(bitPattern: bytes.reduce(UInt64(0)) { $0 << 8 | UInt64($1) })
    }

    /// Milliseconds left until `deadline` (at least 1), or nil when it has passed.
    private static func milliseconds(until deadline: UInt64) -> Int? {
        let now = KVClock.monotonicNanos()
        guard now < deadline else { return nil }
        return max(1, Int((deadline - now) / 1_000_000))
    }
}
