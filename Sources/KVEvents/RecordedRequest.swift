import CMsgpack
import KVCache

/// One request the cache served, as a version 2 recording keeps it (`EventRecording.Kind.request`): when
/// it arrived, its prompt and output lengths, its prompt's block hashes in order (the keys the cache
/// looked up, partial last block included) and the tokens it found cached. With these the trace is
/// rebuilt exactly, requests served entirely from the cache included, and the hit of each can be checked
/// against the cache contents the event batches before it describe.
///
/// Payload: a msgpack map `{"type": "Request", "ts": float64 seconds, "input_tokens": int,
/// "output_tokens": int, "block_size": int, "block_hashes": [bin 16...], "hit_tokens": int}`; a reader
/// skips keys it does not know. Encoding is O(blocks) through a reused buffer; decoding O(payload).
public struct RecordedRequest: Equatable, Sendable {
    /// Seconds, the recorder's clock (a trace's arrival in a replay).
    public var timestamp: Double
    public var inputTokens: Int
    public var outputTokens: Int
    /// Tokens per block of `blockHashes`.
    public var blockTokens: Int
    /// The prompt's block hashes, opaque bytes (ours are the 16 bytes of a `BlockKey`).
    public var blockHashes: [[UInt8]]
    /// Prompt tokens found cached (whole blocks, at most `inputTokens`).
    public var hitTokens: Int

    public init(timestamp: Double, inputTokens: Int, outputTokens: Int, blockTokens: Int, blockHashes: [[UInt8]],
                hitTokens: Int) {
        self.timestamp = timestamp; self.inputTokens = inputTokens; self.outputTokens = outputTokens
        self.blockTokens = blockTokens; self.blockHashes = blockHashes; self.hitTokens = hitTokens
    }

    /// Reads a request frame's payload.
    /// - Throws: `EventRecordingError.malformed` naming the field that is missing or out of range.
    public static func decode(_ payload: ArraySlice<UInt8>) throws(EventRecordingError) -> RecordedRequest {
        let value = try MsgpackValue.decode(payload)
        guard case .string("Request")? = value["type"] else { throw .malformed("not a request record (no type Request)") }
        func count(_ key: String, min: Int) throws(EventRecordingError) -> Int {
            guard let n = value[key]?.integer, n >= min else { throw .malformed("request \(key) is not an integer >= \(min)") }
            return n
        }
        let ts: Double
        if case let .double(d)? = value["ts"] { ts = d } else if let i = value["ts"]?.integer { ts = Double(i) } else {
            throw .malformed("request ts is not a number")
        }
        guard ts.isFinite else { throw .malformed("request ts is not finite") }
        guard case let .array(raw)? = value["block_hashes"] else { throw .malformed("request block_hashes is not an array") }
        var hashes: [[UInt8]] = []
        hashes.reserveCapacity(raw.count)
        for h in raw {
            guard case let .binary(b) = h else { throw .malformed("request block_hashes holds something other than bytes") }
            guard b.count <= VLLMEventDecoder.maxHashBytes else {
                throw .malformed("request block_hashes holds a hash of \(b.count) bytes (at most \(VLLMEventDecoder.maxHashBytes))")
            }
            hashes.append(b)
        }
        let request = RecordedRequest(timestamp: ts, inputTokens: try count("input_tokens", min: 0),
                                      outputTokens: try count("output_tokens", min: 0),
                                      blockTokens: try count("block_size", min: 1), blockHashes: hashes,
                                      hitTokens: try count("hit_tokens", min: 0))
        guard request.hitTokens <= request.inputTokens else {
            throw .malformed("request hit_tokens \(request.hitTokens) over its input_tokens \(request.inputTokens)")
        }
        return request
    }
}

/// Writes `RecordedRequest` payloads from block keys (the replay's side). Not thread-safe: one caller;
/// after the first requests have grown its buffer it allocates nothing. O(blocks).
public final class RecordedRequestEncoder {
    private let out = MsgpackWriter()

    public init() {}

    /// The payload of one request, valid until the next call.
    public func encode(timestamp: Double, inputTokens: Int, outputTokens: Int, blockTokens: Int,
                       keys: some Collection<BlockKey>, hitTokens: Int) -> UnsafeRawBufferPointer {
        out.clear()
        let p = out.packer
        msgpack_pack_map(p, 7)
        out.string("type"); out.string("Request")
        out.string("ts"); msgpack_pack_double(p, timestamp)
        out.string("input_tokens"); msgpack_pack_int64(p, Int64(inputTokens))
        out.string("output_tokens"); msgpack_pack_int64(p, Int64(outputTokens))
        out.string("block_size"); msgpack_pack_int64(p, Int64(blockTokens))
        out.string("block_hashes"); out.keys(keys)
        out.string("hit_tokens"); msgpack_pack_int64(p, Int64(hitTokens))
        return out.bytes
    }
}
