/// Reads one vLLM `KVEventBatch` payload (msgpack, `array_like`: `[ts, events, data_parallel_rank]`),
/// as `VLLMEventEncoder` writes it and as vLLM publishes it, into `DecodedEventBatch`.
///
/// Block hashes are kept opaque as bytes: ours are `bin 16`, vLLM's are `bytes` (sha256) or integers
/// (written here as their 8 big-endian bytes), at most `maxHashBytes`. Fields a consumer does not need are skipped; an unknown
/// event type is kept as `.other` so that newer publishers still read. O(payload).
public enum VLLMEventDecoder {
    /// One event of a batch.
    public enum Event: Equatable, Sendable {
        /// `BlockStored`: the blocks' hashes in chain order, the first one's parent (nil for a first
        /// block), tokens per block, how many token ids came with them, and the medium (`GPU`, `CPU`...).
        case stored(hashes: [[UInt8]], parent: [UInt8]?, blockSize: Int, tokenIDs: Int, medium: String?)
        case removed(hashes: [[UInt8]], medium: String?)
        case allCleared
        case other(type: String)
    }

    /// A decoded `KVEventBatch`.
    public struct Batch: Equatable, Sendable {
        /// Seconds since the epoch, the publisher's clock.
        public var timestamp: Double
        public var events: [Event]
        public var dataParallelRank: Int?
    }

    /// The longest block hash accepted, in bytes: 64 (vLLM's are 32-byte sha256 digests or integers, ours 16).
    public static let maxHashBytes = 64

    public static func decode(_ payload: ArraySlice<UInt8>) throws(EventRecordingError) -> Batch {
        guard case let .array(items) = try MsgpackValue.decode(payload), items.count >= 2 else {
            throw .malformed("not a KVEventBatch: [ts, events, data_parallel_rank] expected")
        }
        let ts: Double
        switch items[0] {
        case let .double(d): ts = d
        case let .int(i): ts = Double(i)
        case let .uint(u): ts = Double(u)
        default: throw .malformed("KVEventBatch ts is not a number")
        }
        guard ts.isFinite else { throw .malformed("KVEventBatch ts is not finite") }
        guard case let .array(raw) = items[1] else { throw .malformed("KVEventBatch events is not an array") }
        var events: [Event] = []
        events.reserveCapacity(raw.count)
        for (i, e) in raw.enumerated() { events.append(try event(e, index: i)) }
        return Batch(timestamp: ts, events: events, dataParallelRank: items.count > 2 ? items[2].integer : nil)
    }

    private static func event(_ e: MsgpackValue, index: Int) throws(EventRecordingError) -> Event {
        // vLLM's tagged structs are maps with "type"; array_like ones would be [type, fields...].
        guard case let .string(type)? = e["type"] else { throw .malformed("event \(index + 1): no type") }
        let medium: String? = if case let .string(m)? = e["medium"] { m } else { nil }
        switch type {
        case "BlockStored":
            let hashes = try hashList(e["block_hashes"], index: index)
            let parent: [UInt8]? = switch e["parent_block_hash"] {
            case nil, .null?: nil
            case let value?: try hash(value, index: index)
            }
            guard let size = e["block_size"]?.integer, size > 0 else { throw .malformed("event \(index + 1): BlockStored without a positive block_size") }
            let tokens: Int = if case let .array(t)? = e["token_ids"] { t.count } else { 0 }
            return .stored(hashes: hashes, parent: parent, blockSize: size, tokenIDs: tokens, medium: medium)
        case "BlockRemoved":
            return .removed(hashes: try hashList(e["block_hashes"], index: index), medium: medium)
        case "AllBlocksCleared":
            return .allCleared
        default:
            return .other(type: type)
        }
    }

    private static func hashList(_ v: MsgpackValue?, index: Int) throws(EventRecordingError) -> [[UInt8]] {
        guard case let .array(items)? = v else { throw .malformed("event \(index + 1): block_hashes is not an array") }
        var out: [[UInt8]] = []
        out.reserveCapacity(items.count)
        for item in items { out.append(try hash(item, index: index)) }
        return out
    }

    private static func hash(_ v: MsgpackValue, index: Int) throws(EventRecordingError) -> [UInt8] {
        switch v {
        case let .binary(b) where b.count <= maxHashBytes: return b
        case let .string(s) where s.utf8.count <= maxHashBytes: return Array(s.utf8)
        case .binary, .string: throw .malformed("event \(index + 1): a block hash of more than \(maxHashBytes) bytes")
        case let .uint(u): return withUnsafeBytes(of: u.bigEndian) { Array($0) }
        case let .int(i): return withUnsafeBytes(of: i.bigEndian) { Array($0) }
        default: throw .malformed("event \(index + 1): a block hash is neither bytes nor an integer")
        }
    }
}
