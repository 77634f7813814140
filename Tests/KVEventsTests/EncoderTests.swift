import KVCache
import KVEvents
import Testing

/// The encoder against bytes written by vLLM itself: `msgspec.msgpack.encode(KVEventBatch(...))` with the
/// classes of vllm/distributed/kv_events.py (vllm 0.34.0), computed independently in Python.
@Suite struct EncoderTests {
    static let k0 = BlockKey(hex: "00112233445566778899aabbccddeeff")!
    static let k1 = BlockKey(hex: "0102030405060708090a0b0c0d0e0f10")!
    static let k2 = BlockKey(hex: "ffeeddccbbaa99887766554433221100")!
    /// KVEventBatch(ts=1.5, events=[BlockStored([k1, k2], parent k0, tokens 1...8, block 4, GPU),
    /// BlockRemoved([k1], CPU), BlockStored([k0], no parent, no tokens, block 4, DISK), AllBlocksCleared()],
    /// data_parallel_rank=0).
    static let vllmBytes = "93cb3ff800000000000094de0008a474797065ab426c6f636b53746f726564ac626c6f636b5f68617368657392c410"
        + "0102030405060708090a0b0c0d0e0f10c410ffeeddccbbaa99887766554433221100b1706172656e745f626c6f636b5f686173"
        + "68c41000112233445566778899aabbccddeeffa9746f6b656e5f696473980102030405060708aa626c6f636b5f73697a650"
        + "4a76c6f72615f6964c0a66d656469756da3475055a96c6f72615f6e616d65c083a474797065ac426c6f636b52656d6f7665"
        + "64ac626c6f636b5f68617368657391c4100102030405060708090a0b0c0d0e0f10a66d656469756da3435055de0008a4747"
        + "97065ab426c6f636b53746f726564ac626c6f636b5f68617368657391c41000112233445566778899aabbccddeeffb17061"
        + "72656e745f626c6f636b5f68617368c0a9746f6b656e5f69647390aa626c6f636b5f73697a6504a76c6f72615f6964c0a66"
        + "d656469756da44449534ba96c6f72615f6e616d65c081a474797065b0416c6c426c6f636b73436c656172656400"

    static let events: [KVEvent] = [
        .blockStored(keys: [k1, k2], parent: k0, blockTokens: 4, tier: .device, tokens: Array(1 ... 8)),
        .blockRemoved(keys: [k1], tier: .host),
        .blockStored(keys: [k0], parent: nil, blockTokens: 4, tier: .disk),
        .allBlocksCleared,
    ]

    static func hex(_ bytes: UnsafeRawBufferPointer) -> String {
        bytes.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
    }

    @Test func encodesWhatVLLMEncodes() {
        let encoder = VLLMEventEncoder()
        #expect(Self.hex(encoder.encode(Self.events, timestamp: 1.5, dataParallelRank: 0)) == Self.vllmBytes)
    }

    @Test func reusingTheEncoderGivesTheSameBytes() {
        let encoder = VLLMEventEncoder()
        _ = encoder.encode([KVEvent.allBlocksCleared], timestamp: 9, dataParallelRank: 3)
        #expect(Self.hex(encoder.encode(Self.events, timestamp: 1.5, dataParallelRank: 0)) == Self.vllmBytes)
    }

    /// The same batch recorded in a log and encoded in place (the publisher thread's path), split
    /// between the log's events and events given as values at every point: vLLM's bytes each time.
    @Test func encodingALogInPlaceGivesVLLMsBytes() {
        var log = KVEventLog()
        let tokens: [UInt32] = Array(1 ... 8)
        [Self.k1, Self.k2].withUnsafeBufferPointer {
            log.appendStored(keys: $0, parent: Self.k0, blockTokens: 4, tier: .device, tokens: .shared(tokens, range: tokens.indices))
        }
        log.appendKey(Self.k1)
        log.closeRemoved(tier: .host)
        log.appendKey(Self.k0)
        log.closeStored(parent: nil, blockTokens: 4, tier: .disk, tokens: .none)
        log.appendCleared()
        #expect(log.events == Self.events)
        let encoder = VLLMEventEncoder()
        for split in 0 ... 4 {
            let bytes = encoder.encode(log: log, records: 0 ..< split, then: Self.events[split...], timestamp: 1.5,
                                       dataParallelRank: 0)
            #expect(Self.hex(bytes) == Self.vllmBytes, "split at \(split)")
        }
    }

    @Test func mediumNamesAreSettable() {
        var medium = EventMedium()
        medium.disk = "STORAGE"
        let encoder = VLLMEventEncoder(medium: medium)
        let out = Self.hex(encoder.encode([KVEvent.blockRemoved(keys: [Self.k0], tier: .disk)], timestamp: 0,
                                          dataParallelRank: 1))
        #expect(out.contains(Array("STORAGE".utf8).withUnsafeBytes { Self.hex($0) }))
        #expect(!out.contains(Array("DISK".utf8).withUnsafeBytes { Self.hex($0) }))
    }
}
