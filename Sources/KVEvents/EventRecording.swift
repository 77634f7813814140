/// The file format of a recorded KV-event stream: what `ZmqEventPublisher` puts on the wire, kept, and
/// (version 2) what the cache was asked between the batches.
///
/// Version 1, `KVEVREC1`: the 8 magic bytes, then one frame per published batch: its length as a 4-byte
/// big-endian unsigned integer, then the batch's payload exactly as published (vLLM's `KVEventBatch` in
/// msgpack, `VLLMEventEncoder`). Nothing else: a recording of vLLM's own stream, or of ours from the wire
/// (`kvcache events record`), is the payloads of the PUB frames, framed so.
///
/// Version 2, `KVEVREC2`: the same, except that each frame's bytes start with one kind byte (counted in
/// the length): `0` an event batch as above, `1` a request (`RecordedRequest`: a lookup the cache served,
/// with its prompt's block hashes and its hit, written before the batch of events it caused). Requests
/// served entirely from the cache change nothing and publish no event; their request frames are what
/// lets a recording be turned back into the exact trace (`kvcache trace export`).
///
/// A frame is at most `maxFrameBytes` and never empty; a recording has at most `maxFrames`. Appending is
/// O(payload) into the caller's buffer; `read` is O(file) and copies nothing; `FrameParser` reads a
/// recording in pieces.
public enum EventRecording {
    /// Version 1's magic: event batches only.
    public static let magic: [UInt8] = Array("KVEVREC1".utf8)
    /// Version 2's magic: kind-tagged frames, event batches and requests.
    public static let magicV2: [UInt8] = Array("KVEVREC2".utf8)
    /// The largest frame a reader accepts (64 MiB).
    public static let maxFrameBytes = 1 << 26
    /// The most frames a reader accepts in one recording: 2^25, as many as a trace's lines
    /// (`DataLimits.maxLines`), so a recording (or a gzip bomb) of tiny frames ends in seconds.
    public static let maxFrames = 1 << 25

    /// What a version 2 frame holds (its first byte).
    public enum Kind: UInt8, Sendable {
        /// A `KVEventBatch` payload as published.
        case eventBatch = 0
        /// A `RecordedRequest`.
        case request = 1
    }

    /// One frame of a recording: its kind (always `.eventBatch` in version 1) and its payload.
    public struct Frame: Sendable {
        public var kind: Kind
        public var payload: ArraySlice<UInt8>
    }

    /// A read recording.
    public struct Contents: Sendable {
        /// 1 or 2.
        public var version: Int
        public var frames: [Frame]
    }

    /// Appends one version 1 frame holding `payload` to `out` (start `out` with `magic`).
    public static func append(_ payload: UnsafeRawBufferPointer, to out: inout [UInt8]) {
        appendLength(payload.count, to: &out)
        out += payload
    }

    /// Appends one version 2 frame of `kind` holding `payload` to `out` (start `out` with `magicV2`).
    public static func append(_ payload: UnsafeRawBufferPointer, kind: Kind, to out: inout [UInt8]) {
        appendLength(payload.count + 1, to: &out)
        out.append(kind.rawValue)
        out += payload
    }

    private static func appendLength(_ count: Int, to out: inout [UInt8]) {
        let n = UInt32(count)
        out += [UInt8(n >> 24), UInt8(n >> 16 & 0xff), UInt8(n >> 8 & 0xff), UInt8(n & 0xff)]
    }

    /// The frames of the recording `bytes`, in order, of either version (`FrameParser` over them).
    /// - Throws: `EventRecordingError.malformed` (no magic, a truncated, oversized or empty frame, an
    ///   unknown kind, too many frames), naming the frame and its offset.
    public static func read(_ bytes: [UInt8]) throws(EventRecordingError) -> Contents {
        var parser = FrameParser(version: try version(magic: bytes.prefix(magic.count)))
        var frames: [Frame] = []
        var offset = magic.count
        while let (frame, consumed) = try parser.next(bytes[offset...], atEnd: true) {
            frames.append(frame)
            offset += consumed
        }
        return Contents(version: parser.version, frames: frames)
    }
}
