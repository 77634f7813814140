import CMsgpack
import KVCache

/// Encodes a batch of `KVEvent`s as vLLM's `KVEventBatch` in msgpack, byte for byte what
/// `msgspec.msgpack.Encoder().encode(KVEventBatch(...))` writes (vllm/distributed/kv_events.py):
///
/// - the batch is an array (`array_like`): `[ts (float64), [events...], data_parallel_rank]`;
/// - each event is a map tagged by its class name under `"type"`, with the fields that have no
///   default in vLLM's class order: `BlockStored {type, block_hashes, parent_block_hash, token_ids,
///   block_size, lora_id, medium, lora_name}`, `BlockRemoved {type, block_hashes, medium}`,
///   `AllBlocksCleared {type}` (fields with defaults are omitted, as `omit_defaults` does);
/// - BlockStored's map header is `map 16` (0xDE 0x0008), as msgspec writes it for a struct of 16
///   possible fields; the other headers are the shortest form;
/// - a block hash is `bin 16`: the key's 16 bytes, high 64 bits first, big-endian (the 32-hex-digit
///   form of docs/BLOCK_KEYS.md as bytes); `lora_id` and `lora_name` are nil.
///
/// All bytes go through msgpack-c's packer into one buffer the encoder keeps (`MsgpackWriter`): after the
/// first batches have grown it, encoding allocates nothing. O(keys + token ids). Not thread-safe: one caller.
public final class VLLMEventEncoder {
    private let out = MsgpackWriter()
    private var packer: UnsafeMutablePointer<msgpack_packer> { out.packer }
    /// The medium name of each tier.
    public var medium: EventMedium

    public init(medium: EventMedium = EventMedium()) {
        self.medium = medium
    }

    /// Encodes one batch, replacing the previous bytes, and returns them (valid until the next call).
    public func encode(_ events: some Collection<KVEvent>, timestamp: Double,
                       dataParallelRank: Int) -> UnsafeRawBufferPointer {
        encode(log: KVEventLog(), records: 0 ..< 0, then: events, timestamp: timestamp, dataParallelRank: dataParallelRank)
    }

    /// Encodes one batch of the events at positions `records` of `log`, read in place (no `KVEvent` is
    /// built), followed by `events`; replaces the previous bytes and returns them (valid until the next
    /// call). What a publisher thread calls on a manager's recorded log. O(keys + token ids).
    public func encode(log: KVEventLog, records: Range<Int>, then events: some Collection<KVEvent>, timestamp: Double,
                       dataParallelRank: Int) -> UnsafeRawBufferPointer {
        var log = log
        return encode(log: &log, records: records, then: events, timestamp: timestamp, dataParallelRank: dataParallelRank)
    }

    /// `encode(log:records:then:timestamp:dataParallelRank:)` on a log read in place, not copied (no
    /// reference count of its arrays touched): the publisher thread's call. `log` is not changed.
    func encode(log: inout KVEventLog, records: Range<Int>, then events: some Collection<KVEvent>, timestamp: Double,
                dataParallelRank: Int) -> UnsafeRawBufferPointer {
        out.clear()
        msgpack_pack_array(packer, 3)
        msgpack_pack_double(packer, timestamp)
        msgpack_pack_array(packer, records.count + events.count)
        log.forEach(in: records) { pack($0) }
        for e in events { pack(e) }
        msgpack_pack_int64(packer, Int64(dataParallelRank))
        return bytes
    }

    /// The bytes of the last batch.
    public var bytes: UnsafeRawBufferPointer { out.bytes }

    private func pack(_ e: KVEvent) {
        switch e {
        case let .blockStored(keys, parent, blockTokens, tier, tokens):
            keys.withUnsafeBufferPointer { k in
                tokens.withUnsafeBufferPointer { t in
                    pack(.stored(keys: k, parent: parent, blockTokens: blockTokens, tier: tier, tokens: t))
                }
            }
        case let .blockRemoved(keys, tier): keys.withUnsafeBufferPointer { pack(.removed(keys: $0, tier: tier)) }
        case .allBlocksCleared: pack(.cleared)
        }
    }

    private func pack(_ e: KVEventLog.Entry) {
        switch e {
        case .stored(let keys, let parent, let blockTokens, let tier, let tokens):
            // msgspec writes the map header of a struct that may have 16 or more fields (BlockStored: the
            // tag and 15) as map 16 and fills in the count, even when fewer are written; so does this.
            var header: (UInt8, UInt8, UInt8) = (0xDE, 0x00, 8)
            withUnsafeBytes(of: &header) { out.raw($0) }
            out.string("type"); out.string("BlockStored")
            out.string("block_hashes"); out.keys(keys)
            out.string("parent_block_hash")
            if let parent { out.key(parent) } else { msgpack_pack_nil(packer) }
            out.string("token_ids")
            out.uint32s(tokens)
            out.string("block_size"); msgpack_pack_int64(packer, Int64(blockTokens))
            out.string("lora_id"); msgpack_pack_nil(packer)
            out.string("medium"); out.string(medium.name(of: tier))
            out.string("lora_name"); msgpack_pack_nil(packer)
        case .removed(let keys, let tier):
            msgpack_pack_map(packer, 3)
            out.string("type"); out.string("BlockRemoved")
            out.string("block_hashes"); out.keys(keys)
            out.string("medium"); out.string(medium.name(of: tier))
        case .cleared:
            msgpack_pack_map(packer, 1)
            out.string("type"); out.string("AllBlocksCleared")
        }
    }
}
