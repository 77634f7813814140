import CZmq

/// The last `capacity` batches a publisher sent, kept for its replay socket as ZMQ messages that share
/// their payload with the message that went out: `keep` takes a reference (`zmq_msg_copy`: libzmq's
/// atomic reference count, no copy of the bytes) and a later `keep` into the same slot drops it, so a
/// payload is freed when the slot is reused and every subscriber's copy is gone, on whichever thread
/// drops the last reference. Memory is the kept payloads at their exact sizes plus one message header
/// per slot; a slot never grows. Not thread-safe: the publisher thread's.
final class ReplayRing {
    let capacity: Int
    private let slots: UnsafeMutablePointer<zmq_msg_t>
    private var seqs: [Int64]
    /// Slots in use (all of them once `capacity` batches were kept).
    private(set) var count = 0
    /// The oldest slot once the ring is full.
    private var oldest = 0

    /// Precondition: `capacity >= 1`.
    init(capacity: Int) {
        precondition(capacity >= 1, "a replay ring needs a slot")
        self.capacity = capacity
        slots = .allocate(capacity: capacity)
        seqs = Array(repeating: 0, count: capacity)
    }

    deinit {
        for i in 0 ..< count { zmq_msg_close(slots + i) }
        slots.deallocate()
    }

    /// Keeps a reference to `message` (a payload) as batch `seq`, in place of the oldest when the ring
    /// is full. `message` itself is left as it was, to be sent. O(1); allocates nothing.
    func keep(_ seq: Int64, _ message: UnsafeMutablePointer<zmq_msg_t>) {
        let slot: Int
        if count < capacity {
            slot = count
            count += 1
            zmq_msg_init(slots + slot)
        } else {
            slot = oldest
            oldest = oldest + 1 == capacity ? 0 : oldest + 1
        }
        zmq_msg_copy(slots + slot, message)   // releases the slot's previous payload
        seqs[slot] = seq
    }

    /// Calls `body` with each kept batch numbered `start` or later, oldest first; the message is the
    /// ring's (take a `zmq_msg_copy` to send it). O(count).
    func forEach(from start: Int64, _ body: (Int64, UnsafeMutablePointer<zmq_msg_t>) -> Void) {
        for k in 0 ..< count {
            let slot = (oldest + k) % capacity
            if seqs[slot] >= start { body(seqs[slot], slots + slot) }
        }
    }
}
