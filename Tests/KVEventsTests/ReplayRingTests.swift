import CZmq
@testable import KVEvents
import Testing

/// The replay ring keeps the last `capacity` payloads by reference: each batch comes back in order with
/// its own bytes after the ring wrapped, after the sender's message was sent or closed, and a replay
/// from inside the ring starts at that number.
@Suite struct ReplayRingTests {
    /// A ZMQ message holding `bytes`.
    static func message(_ bytes: [UInt8]) -> zmq_msg_t {
        var m = zmq_msg_t()
        #expect(zmq_msg_init_size(&m, bytes.count) == 0)
        bytes.withUnsafeBytes { zmq_msg_data(&m).copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
        return m
    }

    static func bytes(_ m: UnsafeMutablePointer<zmq_msg_t>) -> [UInt8] {
        Array(UnsafeRawBufferPointer(start: zmq_msg_data(m), count: zmq_msg_size(m)))
    }

    /// Payload `seq` of the test: long enough that libzmq keeps it out of line (a shared, counted buffer).
    static func payload(_ seq: Int64) -> [UInt8] { (0 ..< 100).map { UInt8(truncatingIfNeeded: Int64($0) &* 7 &+ seq) } }

    @Test(arguments: [1, 3, 8])
    func keepsTheLastBatchesWithTheirOwnBytes(capacity: Int) {
        let ring = ReplayRing(capacity: capacity)
        for seq in Int64(0) ..< 11 {
            var m = Self.message(Self.payload(seq))
            ring.keep(seq, &m)
            #expect(Self.bytes(&m) == Self.payload(seq), "keeping leaves the message to be sent")
            zmq_msg_close(&m)   // as a send would: the ring's reference stays
            var seen: [Int64] = []
            ring.forEach(from: 0) { s, kept in
                #expect(Self.bytes(kept) == Self.payload(s))
                seen.append(s)
            }
            #expect(seen == Array(max(0, seq + 1 - Int64(capacity)) ... seq))
            #expect(ring.count == min(capacity, Int(seq) + 1))
        }
        var from: [Int64] = []
        ring.forEach(from: 9) { s, _ in from.append(s) }
        #expect(from == Array(max(9, 11 - Int64(capacity)) ..< 11))
        ring.forEach(from: 11) { s, _ in Issue.record("batch \(s) is not from 11 on") }
    }
}
