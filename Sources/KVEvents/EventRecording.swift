/// The file format of a recorded KV-event stream: what `ZmqEventPublisher` puts on the wire, kept.
///
/// Layout: the 8 bytes `KVEVREC1`, then one frame per published batch: its length as a 4-byte
/// big-endian unsigned integer, then the batch's payload exactly as published (vLLM's `KVEventBatch`
/// in msgpack, `VLLMEventEncoder`). Nothing else: a recording of vLLM's own stream is the payloads
/// of its PUB frames, framed the same way. A frame is at most `maxFrameBytes`. Appending is O(payload)
/// into the caller's buffer; `frames` is O(file) and copies nothing.
public enum EventRecording {
    public static let magic: [UInt8] = Array("KVEVREC1".utf8)
    /// The largest frame a reader accepts (64 MiB).
    public static let maxFrameBytes = 1 << 26

    /// Appends one frame holding `payload` to `out` (start `out` with `magic`).
    public static func append(_ payload: UnsafeRawBufferPointer, to out: inout [UInt8]) {
        let n = UInt32(payload.count)
        out += [UInt8(n >> 24), UInt8(n >> 16 & 0xff), UInt8(n >> 8 & 0xff), UInt8(n & 0xff)]
        out += payload
    }

    /// The payloads of the recording `bytes`, in order.
    /// - Throws: `EventRecordingError.malformed` (no magic, a truncated or oversized frame), naming the frame.
    public static func frames(_ bytes: [UInt8]) throws(EventRecordingError) -> [ArraySlice<UInt8>] {
        guard bytes.count >= magic.count, Array(bytes[0..<magic.count]) == magic else {
            throw .malformed("not a KV-event recording (it does not start with KVEVREC1)")
        }
        var frames: [ArraySlice<UInt8>] = []
        var offset = magic.count
        while offset < bytes.count {
            guard bytes.count - offset >= 4 else { throw .malformed("frame \(frames.count + 1): truncated length") }
            let n = bytes[offset..<offset + 4].reduce(0) { $0 << 8 | Int($1) }
            offset += 4
            guard n <= maxFrameBytes else { throw .malformed("frame \(frames.count + 1): \(n) bytes, over the \(maxFrameBytes) limit") }
            guard bytes.count - offset >= n else { throw .malformed("frame \(frames.count + 1): truncated (\(n) bytes announced, \(bytes.count - offset) left)") }
            frames.append(bytes[offset..<offset + n])
            offset += n
        }
        return frames
    }
}
