import CZmq
import Glibc
import KVCache
import KVTiers
import Synchronization

/// Publishes batches of `KVEvent`s the way vLLM's `ZmqEventPublisher` does, so a router written for
/// vLLM subscribes unchanged:
///
/// - a PUB socket sends each batch as three frames: the topic, the sequence number (8 bytes,
///   big-endian, from 0, one per batch), and the msgpack payload (`VLLMEventEncoder`);
/// - an optional ROUTER socket answers a replay request (`[identity, "", start seq (8 bytes BE)]`)
///   with `[identity, "", topic, seq, payload]` for every buffered batch from `start`, then the end
///   marker `[identity, "", "", -1 (8 bytes BE), ""]`; the last `bufferSteps` batches are kept.
///
/// As in vLLM, a publisher thread does the work: `publish` (the scheduler loop's call, single-threaded
/// by contract) only numbers the batch and queues it under a mutex. `publish(from:)` drains the
/// manager's recorded events into the queue's next empty log (`KVEventLog.take(from:)` into an empty
/// log: the two exchange buffers, nothing is copied), so the serving thread never copies a recorded key
/// or token id, however far behind the thread is; the queue's logs are a pool that, once it holds as
/// many logs as the largest backlog and each has grown to the largest batch, allocates nothing. The
/// thread takes every waiting batch at once (a swap of the queue), looking every millisecond (so the
/// serving loop never pays for waking it), encodes each straight from its log (no `KVEvent` is built
/// for it; it takes no reference to the token arrays the log shares with the manager's sequences) into
/// a reused buffer, copies the payload once into a ZMQ message that the PUB socket and the replay ring
/// (`ReplayRing`) share, answers replay requests, and hands the sent batches back; the caller empties
/// them (so those references are released on the thread that took them) for the next batches. The serving loop never
/// waits on encoding or sockets. The queue is unbounded (a batch is never lost before it is numbered
/// and sent; `unsentBatches` is its length, `threadCPUSeconds` the thread's cost); `close` sends what
/// is queued before it stops. A full PUB queue (`hwm` batches) drops batches for slow subscribers, as
/// ZMQ PUB does; they find the gap by the sequence numbers and ask the replay socket.
// Sendable: the sockets, the encoder and the ring belong to the publisher thread; `shared` is guarded by
// `lock`; `nextSequence` is the publishing caller's.
public final class ZmqEventPublisher: @unchecked Sendable {
    /// The publisher's settings, named as vLLM's `KVEventsConfig`.
    public struct Config: Sendable {
        /// PUB address: `tcp://*:5557` binds; ipc:// and inproc:// too.
        public var endpoint = "tcp://*:5557"
        /// ROUTER address for replay requests, or nil for none.
        public var replayEndpoint: String? = nil
        /// Batches kept for replay.
        public var bufferSteps = 10_000
        /// High-water mark of the PUB socket (batches).
        public var hwm = 100_000
        public var topic = ""
        /// Written into every batch (vLLM's `data_parallel_rank`).
        public var dataParallelRank = 0
        public var medium = EventMedium()
        public init() {}
    }

    /// Numbered batches waiting for the publisher thread, in order: batch `i` is the device events of
    /// `logs[i]`, then `events` from the previous batch's `eventEnd` to its own (lower tiers' events, or
    /// those given to `publish(_:timestamp:)`). `logs` is a pool: those at `batches.count` and after
    /// are empty, kept for the next batches' events. The two threads swap it whole.
    private struct Handoff {
        struct Batch {
            var seq: Int64
            var timestamp: Double
            var eventEnd: Int
        }
        var logs: [KVEventLog] = []
        var events: [KVEvent] = []
        var batches: [Batch] = []

        /// Makes `logs[batches.count]` exist (an empty log) for the next batch. O(1) amortized.
        mutating func ensureNextLog() {
            if logs.count == batches.count { logs.append(KVEventLog()) }
        }

        /// Empties every batch, keeping the logs (emptied) and the buffers' capacity. O(batches and
        /// their shared prompts).
        mutating func empty() {
            for i in batches.indices { logs[i].removeAll() }
            events.removeAll(keepingCapacity: true)
            batches.removeAll(keepingCapacity: true)
        }
    }

    public let config: Config
    private let context: UnsafeMutableRawPointer
    private let pub: UnsafeMutableRawPointer
    private let replay: UnsafeMutableRawPointer?
    private let encoder: VLLMEventEncoder
    private let topic: [UInt8]
    /// The sent batches kept for replay (with a replay socket): the thread's.
    private let ring: ReplayRing?
    /// What the two threads share: the batches waiting for the thread, or (`sent`) the thread's last
    /// ones, already sent and handed back for their logs. The publishing caller empties those before
    /// the next batch joins, so the token arrays a log shares with the manager's sequences are released
    /// on the caller's thread and their reference counts never travel between the threads.
    private struct Queue {
        var handoff = Handoff()
        var sent = false
    }
    /// Guards `shared` (a pthread mutex, which ThreadSanitizer sees).
    private let lock = ConditionLock()
    @exclusivity(unchecked) private var shared = Queue()
    private let running = Atomic<Bool>(true)
    private var thread: pthread_t?
    // The publishing caller's (single-threaded by contract), so its per-access exclusivity checks are off.
    /// Sequence number of the next batch.
    @exclusivity(unchecked) public private(set) var nextSequence: Int64 = 0
    /// Batches handed to libzmq so far (the thread's; read by anyone).
    private let sentBatches = Atomic<Int64>(0)
    /// Nanoseconds of CPU time the publisher thread has spent encoding and sending (the thread's).
    private let threadNanos = Atomic<Int64>(0)

    public init(_ config: Config) throws(KVEventsError) {
        guard config.bufferSteps >= 1, config.hwm >= 1 else {
            throw .invalidArgument("bufferSteps and hwm must be at least 1")
        }
        guard let ctx = zmq_ctx_new() else { throw .socket(Self.lastError()) }
        guard let pub = zmq_socket(ctx, ZMQ_PUB) else {
            zmq_ctx_term(ctx)
            throw .socket(Self.lastError())
        }
        var hwm = Int32(clamping: config.hwm), linger: Int32 = 0
        zmq_setsockopt(pub, ZMQ_SNDHWM, &hwm, MemoryLayout<Int32>.size)
        zmq_setsockopt(pub, ZMQ_LINGER, &linger, MemoryLayout<Int32>.size)
        if zmq_bind(pub, config.endpoint) != 0 {
            let reason = Self.lastError()
            zmq_close(pub); zmq_ctx_term(ctx)
            throw .bind(endpoint: config.endpoint, reason: reason)
        }
        var router: UnsafeMutableRawPointer? = nil
        if let endpoint = config.replayEndpoint {
            guard let r = zmq_socket(ctx, ZMQ_ROUTER) else {
                let reason = Self.lastError()
                zmq_close(pub); zmq_ctx_term(ctx)
                throw .socket(reason)
            }
            // Room for a full replay plus its end marker, as vLLM sizes it.
            var replayHWM = Int32(clamping: 2 * (config.bufferSteps + 1))
            zmq_setsockopt(r, ZMQ_SNDHWM, &replayHWM, MemoryLayout<Int32>.size)
            zmq_setsockopt(r, ZMQ_LINGER, &linger, MemoryLayout<Int32>.size)
            if zmq_bind(r, endpoint) != 0 {
                let reason = Self.lastError()
                zmq_close(r); zmq_close(pub); zmq_ctx_term(ctx)
                throw .bind(endpoint: endpoint, reason: reason)
            }
            router = r
        }
        self.config = config
        context = ctx
        self.pub = pub
        replay = router
        ring = router == nil ? nil : ReplayRing(capacity: config.bufferSteps)
        encoder = VLLMEventEncoder(medium: config.medium)
        topic = Array(config.topic.utf8)
        // A throw from here on runs deinit, which closes the sockets.
        guard startThread() else { throw .socket("cannot start the publisher thread") }
    }

    deinit { close() }

    /// Sends what is queued, stops the publisher thread and closes the sockets; later `publish` calls
    /// are ignored. Idempotent.
    public func close() {
        guard running.exchange(false, ordering: .acquiringAndReleasing) else { return }
        if let thread { pthread_join(thread, nil) }
        if let replay { zmq_close(replay) }
        zmq_close(pub)
        zmq_ctx_term(context)
    }

    /// Queues `events` as one batch stamped `timestamp` (seconds since the epoch, as vLLM's
    /// `time.time()`) and returns its sequence number, or nil when `events` is empty or the publisher
    /// is closed (no number is used then). O(events) amortized (they are copied into the queue).
    @discardableResult
    public func publish(_ events: some Collection<KVEvent>, timestamp: Double) -> Int64? {
        guard !events.isEmpty, running.load(ordering: .relaxed) else { return nil }
        return withQueue { q in
            reclaim(&q)
            q.handoff.ensureNextLog()   // no device events: the batch's log stays empty
            q.handoff.events.append(contentsOf: events)
            return number(&q.handoff, timestamp: timestamp)
        }
    }

    /// Drains `manager`'s events (and its lower tiers') and queues them as one batch stamped now, or
    /// returns nil when there were none. The device events change hands by an exchange of buffers with
    /// the queue's next emptied log (O(1), nothing copied), the lower tiers' events are appended (O(their
    /// events)); allocates only while the pool of logs and their buffers grow.
    @discardableResult
    public func publish(from manager: KVCacheManager) -> Int64? {
        guard running.load(ordering: .relaxed) else { return nil }
        let timestamp = Self.now()
        return withQueue { q in
            reclaim(&q)
            q.handoff.ensureNextLog()
            let events = q.handoff.events.count, next = q.handoff.batches.count
            manager.drainEvents(into: &q.handoff.logs[next], lowerTiers: &q.handoff.events)
            guard !q.handoff.logs[next].isEmpty || q.handoff.events.count > events else { return nil }
            return number(&q.handoff, timestamp: timestamp)
        }
    }

    /// Empties the batches the thread handed back, keeping their logs and buffers. The publishing
    /// caller's, under `lock`. O(their records).
    private func reclaim(_ q: inout Queue) {
        guard q.sent else { return }
        q.handoff.empty()
        q.sent = false
    }

    /// Runs `body` on the shared queue with its lock held.
    @inline(__always)
    private func withQueue<R>(_ body: (inout Queue) -> R) -> R {
        lock.withLock { body(&shared) }
    }

    /// Ends a batch (its log `h.logs[h.batches.count]`) at what `h` holds now and numbers it. Under `lock`.
    private func number(_ h: inout Handoff, timestamp: Double) -> Int64 {
        let seq = nextSequence
        nextSequence += 1
        h.batches.append(Handoff.Batch(seq: seq, timestamp: timestamp, eventEnd: h.events.count))
        return seq
    }

    /// The publisher thread's half of the batches in `h`: encode each from where it lies, send, keep for
    /// replay. Reads them through buffer pointers, so that it takes no reference to their arrays (a
    /// reference count is a write into an array's first cache line, which the serving thread writes next
    /// when it empties and refills the log); each log is encoded in place (`inout`: passing it by value
    /// from a buffer pointer would copy it, retaining and releasing its four arrays).
    private func send(_ h: inout Handoff) {
        h.logs.withUnsafeMutableBufferPointer { logs in
            h.events.withUnsafeBufferPointer { events in
                h.batches.withUnsafeBufferPointer { batches in
                    var event = 0
                    for i in batches.indices {
                        let b = batches[i]
                        send(b.seq, encoder.encode(log: &logs[i], records: 0 ..< logs[i].count,
                                                   then: UnsafeBufferPointer(rebasing: events[event ..< b.eventEnd]),
                                                   timestamp: b.timestamp, dataParallelRank: config.dataParallelRank))
                        event = b.eventEnd
                    }
                }
            }
        }
    }

    /// Sends one encoded batch on the PUB socket and keeps it for replay: the payload is copied once,
    /// into a ZMQ message that the PUB socket and the replay ring share.
    private func send(_ seq: Int64, _ payload: UnsafeRawBufferPointer) {
        var message = zmq_msg_t()
        guard zmq_msg_init_size(&message, payload.count) == 0 else { return }   // out of memory: a gap
        if let base = payload.baseAddress { zmq_msg_data(&message).copyMemory(from: base, byteCount: payload.count) }
        ring?.keep(seq, &message)
        var seqBE = UInt64(bitPattern: seq).bigEndian
        topic.withUnsafeBytes { _ = zmq_send(pub, $0.baseAddress, $0.count, ZMQ_SNDMORE | ZMQ_DONTWAIT) }
        withUnsafeBytes(of: &seqBE) { _ = zmq_send(pub, $0.baseAddress, 8, ZMQ_SNDMORE | ZMQ_DONTWAIT) }
        if zmq_msg_send(&message, pub, ZMQ_DONTWAIT) < 0 { zmq_msg_close(&message) }
    }

    /// Batches numbered but not yet handed to libzmq: the publisher thread's backlog. A serving loop
    /// that publishes faster than the thread encodes sees it grow (memory grows with it: a batch is never
    /// dropped before it is sent). The publishing caller's, as `publish`. O(1).
    public var unsentBatches: Int64 { nextSequence - sentBatches.load(ordering: .acquiring) }

    /// CPU time the publisher thread has spent encoding and sending batches, in seconds (its wake-ups
    /// and replay answers not counted). O(1).
    public var threadCPUSeconds: Double { Double(threadNanos.load(ordering: .relaxed)) / 1e9 }

    /// Seconds since the epoch from the real-time clock.
    public static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    static func lastError() -> String { String(cString: zmq_strerror(zmq_errno())) }

    // MARK: The publisher thread

    /// Starts the publisher thread. It holds no reference: `close` (called by `deinit` at the latest)
    /// joins it before the publisher goes away.
    private func startThread() -> Bool {
        var t = pthread_t()
        let rc = pthread_create(&t, nil, { arg in
            Unmanaged<ZmqEventPublisher>.fromOpaque(arg!).takeUnretainedValue().serve()
            return nil
        }, Unmanaged.passUnretained(self).toOpaque())
        guard rc == 0 else { return false }
        thread = t
        return true
    }

    /// The publisher thread: every millisecond, sends the queued batches and answers a waiting replay
    /// request; after `close`, sends what is left and returns.
    private func serve() {
        var item = zmq_pollitem_t(socket: replay, fd: 0, events: Int16(ZMQ_POLLIN), revents: 0)
        var frames: [[UInt8]] = []
        var frame = [UInt8](repeating: 0, count: 256)
        var taken = Handoff()   // the batches being sent; then handed back for their logs
        while true {
            let open = running.load(ordering: .acquiring)
            let got = withQueue { q in
                guard !q.sent, !q.handoff.batches.isEmpty else { return false }
                swap(&q.handoff, &taken)
                q.sent = true   // harmless when `taken` was the first, empty one
                return true
            }
            if got {
                let start = KVClock.threadCPUNanos()
                send(&taken)
                threadNanos.add(Int64(KVClock.threadCPUNanos() &- start), ordering: .relaxed)
                sentBatches.add(Int64(taken.batches.count), ordering: .releasing)
            }
            guard open else { return }
            guard let replay else { usleep(1000); continue }
            guard zmq_poll(&item, 1, 1) > 0 else { continue }
            frames.removeAll(keepingCapacity: true)
            var more: Int32 = 1
            while more != 0 {
                let n = frame.withUnsafeMutableBytes { zmq_recv(replay, $0.baseAddress, $0.count, ZMQ_DONTWAIT) }
                if n < 0 { break }
                frames.append(Array(frame[..<min(Int(n), frame.count)]))
                var size = MemoryLayout<Int32>.size
                zmq_getsockopt(replay, ZMQ_RCVMORE, &more, &size)
            }
            guard frames.count == 3, frames[2].count == 8 else { continue }  // not a replay request
            let start = frames[2].reduce(Int64(0)) { $0 << 8 | Int64($1) }
            let identity = frames[0]
            ring?.forEach(from: start) { seq, payload in send(replay, identity, topic, seq, payload) }
            send(replay, identity, [], -1, nil)
        }
    }

    /// Sends one replayed batch, `[identity, "", topic, seq, payload]`, on the ROUTER socket; the
    /// payload goes out as a reference to `payload` (`zmq_msg_copy`), not a copy of its bytes, or empty
    /// when it is nil (the end marker).
    private func send(_ socket: UnsafeMutableRawPointer, _ identity: [UInt8], _ topic: [UInt8], _ seq: Int64,
                      _ payload: UnsafeMutablePointer<zmq_msg_t>?) {
        var seqBE = UInt64(bitPattern: seq).bigEndian
        identity.withUnsafeBytes { _ = zmq_send(socket, $0.baseAddress, $0.count, ZMQ_SNDMORE) }
        _ = zmq_send(socket, nil, 0, ZMQ_SNDMORE)
        topic.withUnsafeBytes { _ = zmq_send(socket, $0.baseAddress, $0.count, ZMQ_SNDMORE) }
        withUnsafeBytes(of: &seqBE) { _ = zmq_send(socket, $0.baseAddress, 8, ZMQ_SNDMORE) }
        var message = zmq_msg_t()
        zmq_msg_init(&message)
        if let payload { zmq_msg_copy(&message, payload) }
        if zmq_msg_send(&message, socket, 0) < 0 { zmq_msg_close(&message) }
    }
}
