import KVCache
import KVEvents
import Testing

/// Recordings: random event batches written by the publisher's encoder and framed by `EventRecording`
/// read back by `VLLMEventDecoder` field for field, and version 2's request frames between them by
/// `RecordedRequest`; every truncation and random damage of a recording is a thrown
/// `EventRecordingError`, never a crash or a hang.
@Suite("KV-event recordings")
struct EventRecordingTests {
    static func bytes(_ k: BlockKey) -> [UInt8] {
        withUnsafeBytes(of: (k.hi.bigEndian, k.lo.bigEndian)) { Array($0) }
    }

    static func randomEvents(_ g: inout SplitMix64) -> [KVEvent] {
        (0..<Int.random(in: 0...6, using: &g)).map { _ -> KVEvent in
            let keys = (0..<Int.random(in: 1...5, using: &g)).map { _ in BlockKey(lo: g.next(), hi: g.next()) }
            let tier = Tier.allCases.randomElement(using: &g)!
            switch Int.random(in: 0...9, using: &g) {
            case 0: return .allBlocksCleared
            case 1...3: return .blockRemoved(keys: keys, tier: tier)
            default:
                let size = Int.random(in: 1...64, using: &g)
                let tokens = Bool.random(using: &g) ? (0..<keys.count * size).map { _ in UInt32.random(in: 0...200_000, using: &g) } : []
                return .blockStored(keys: keys, parent: Bool.random(using: &g) ? BlockKey(lo: g.next(), hi: g.next()) : nil,
                                    blockTokens: size, tier: tier, tokens: tokens)
            }
        }
    }

    /// Seeds 0..<10 write version 1 (event batches only), 10..<20 version 2 with request frames between.
    @Test(arguments: 0..<20)
    func randomBatchesReadBackAsWritten(seed: UInt64) throws {
        var g = SplitMix64(seed: seed)
        let v2 = seed >= 10
        let encoder = VLLMEventEncoder()
        let requestEncoder = RecordedRequestEncoder()
        let medium = EventMedium()
        var recording = v2 ? EventRecording.magicV2 : EventRecording.magic
        var written: [(Double, [KVEvent])] = []
        var requests: [RecordedRequest] = []
        var kinds: [EventRecording.Kind] = []
        for _ in 0..<Int.random(in: 0...30, using: &g) {
            if v2 && Bool.random(using: &g) {
                let keys = (0..<Int.random(in: 0...8, using: &g)).map { _ in BlockKey(lo: g.next(), hi: g.next()) }
                let size = Int.random(in: 1...64, using: &g)
                let input = Int.random(in: 0...keys.count * size, using: &g)
                let r = RecordedRequest(timestamp: Double.random(in: 0...2e9, using: &g), inputTokens: input,
                                        outputTokens: Int.random(in: 0...4096, using: &g), blockTokens: size,
                                        blockHashes: keys.map(Self.bytes), hitTokens: Int.random(in: 0...input, using: &g))
                EventRecording.append(requestEncoder.encode(timestamp: r.timestamp, inputTokens: r.inputTokens,
                                                            outputTokens: r.outputTokens, blockTokens: size, keys: keys,
                                                            hitTokens: r.hitTokens), kind: .request, to: &recording)
                requests.append(r)
                kinds.append(.request)
                continue
            }
            let events = Self.randomEvents(&g)
            let ts = Double.random(in: 0...2e9, using: &g)
            let payload = encoder.encode(events, timestamp: ts, dataParallelRank: 3)
            if v2 { EventRecording.append(payload, kind: .eventBatch, to: &recording) } else { EventRecording.append(payload, to: &recording) }
            written.append((ts, events))
            kinds.append(.eventBatch)
        }
        let contents = try EventRecording.read(recording)
        #expect(contents.version == (v2 ? 2 : 1))
        #expect(contents.frames.map(\.kind) == kinds)
        #expect(try contents.frames.filter { $0.kind == .request }.map { try RecordedRequest.decode($0.payload) } == requests)
        // Fed in random pieces, the frame parser returns the same frames, one at a time.
        var parser = EventRecording.FrameParser(version: contents.version)
        var held: [UInt8] = [], fed = 8, start = 0, pieced: [(EventRecording.Kind, [UInt8])] = []
        while true {
            if let (frame, consumed) = try parser.next(held[start...], atEnd: fed == recording.count) {
                pieced.append((frame.kind, Array(frame.payload)))
                start += consumed
            } else if fed == recording.count {
                break
            } else {
                let end = min(recording.count, fed + Int.random(in: 1...64, using: &g))
                held += recording[fed..<end]
                fed = end
            }
        }
        #expect(pieced.map(\.0) == kinds && pieced.map(\.1) == contents.frames.map { Array($0.payload) })
        #expect(parser.frames == kinds.count && parser.offset == recording.count)
        let frames = contents.frames.filter { $0.kind == .eventBatch }.map(\.payload)
        #expect(frames.count == written.count)
        for (frame, (ts, events)) in zip(frames, written) {
            let batch = try VLLMEventDecoder.decode(frame)
            #expect(batch.timestamp == ts && batch.dataParallelRank == 3 && batch.events.count == events.count)
            for (read, event) in zip(batch.events, events) {
                switch event {
                case let .blockStored(keys, parent, size, tier, tokens):
                    #expect(read == .stored(hashes: keys.map(Self.bytes), parent: parent.map(Self.bytes), blockSize: size,
                                            tokenIDs: tokens.count, medium: medium.name(of: tier)))
                case let .blockRemoved(keys, tier):
                    #expect(read == .removed(hashes: keys.map(Self.bytes), medium: medium.name(of: tier)))
                case .allBlocksCleared:
                    #expect(read == .allCleared)
                }
            }
        }
        // Every truncation of the recording, and random byte damage, throws (or, for damage that stays
        // well-formed, reads), and nothing crashes.
        for cut in stride(from: 0, to: recording.count, by: max(1, recording.count / 200)) {
            let prefix = Array(recording.prefix(cut))
            Self.readAll(prefix)
        }
        for _ in 0..<50 where recording.count > 8 {
            var damaged = recording
            damaged[Int.random(in: 8..<damaged.count, using: &g)] = UInt8.random(in: 0...255, using: &g)
            Self.readAll(damaged)
        }
    }

    /// Reads every frame of `bytes` as far as it reads, for the damage checks.
    static func readAll(_ bytes: [UInt8]) {
        guard let contents = try? EventRecording.read(bytes) else { return }
        for f in contents.frames {
            switch f.kind {
            case .eventBatch: _ = try? VLLMEventDecoder.decode(f.payload)
            case .request: _ = try? RecordedRequest.decode(f.payload)
            }
        }
    }

    @Test func hostileFramesAreRefusedBeforeAllocating() throws {
        // An array or map that claims more items than there are bytes, too deep a nesting, a frame over
        // the limit: one error each.
        let cases: [([UInt8], String)] = [
            ([0xdd, 0x7f, 0xff, 0xff, 0xff], "array"),
            ([0xdf, 0x7f, 0xff, 0xff, 0xff], "map"),
            (Array(repeating: 0x91, count: 64) + [0xc0], "deeper"),
            ([0xc7, 0x01, 0x00, 0x00], "not supported"),
            ([0x93, 0xcb, 0x7f, 0xf0, 0, 0, 0, 0, 0, 0, 0x90, 0x00], "not finite"),
        ]
        for (payload, says) in cases {
            #expect { try VLLMEventDecoder.decode(payload[...]) } throws: { ($0 as? EventRecordingError)?.description.contains(says) == true }
        }
        // More values than `maxValues` (each a boxed enum), counted before the array is allocated or read.
        let many: [UInt8] = [0xdd, 0x00, 0x80, 0x00, 0x01] + [UInt8](repeating: 0xc0, count: (1 << 23) + 1)
        #expect { try MsgpackValue.decode(many[...]) } throws: { ($0 as? EventRecordingError)?.description.contains("values limit") == true }
        let nested: [UInt8] = [0xdd, 0x00, 0x40, 0x00, 0x00] + (0..<(1 << 23)).map { $0 % 2 == 0 ? 0x91 : 0xc0 }
        #expect { try MsgpackValue.decode(nested[...]) } throws: { ($0 as? EventRecordingError)?.description.contains("8388608") == true }
        // A block hash longer than 64 bytes.
        let longHash: [UInt8] = [0x93, 0x00, 0x91, 0x83, 0xa4] + Array("type".utf8) + [0xac] + Array("BlockRemoved".utf8)
            + [0xac] + Array("block_hashes".utf8) + [0x91, 0xc4, 65] + [UInt8](repeating: 1, count: 65) + [0xa6] + Array("medium".utf8) + [0xa3] + Array("GPU".utf8) + [0x00]
        #expect { try VLLMEventDecoder.decode(longHash[...]) } throws: { ($0 as? EventRecordingError)?.description.contains("more than 64 bytes") == true }
        // An empty frame (it would cost a frame record for 4 bytes of file: a gzip of zeros), named with its offset.
        #expect { try EventRecording.read(EventRecording.magic + [0, 0, 0, 0]) } throws: {
            ($0 as? EventRecordingError)?.description == "frame 1 (byte 8): empty"
        }
        let oversized = EventRecording.magic + [0x7f, 0xff, 0xff, 0xff]
        #expect { try EventRecording.read(oversized) } throws: { ($0 as? EventRecordingError)?.description.contains("limit") == true }
        // Version 2: a frame without its kind byte, an unknown kind; a request whose hit exceeds its prompt.
        for (bytes, says) in [(EventRecording.magicV2 + [0, 0, 0, 0], "empty"), (EventRecording.magicV2 + [0, 0, 0, 1, 7], "unknown kind")] {
            #expect { try EventRecording.read(bytes) } throws: { ($0 as? EventRecordingError)?.description.contains(says) == true }
        }
        let k = BlockKey(lo: 1, hi: 2)
        let requestEncoder = RecordedRequestEncoder()
        let overHit = Array(requestEncoder.encode(timestamp: 0, inputTokens: 10, outputTokens: 0, blockTokens: 16,
                                                            keys: [k], hitTokens: 16))
        #expect { try RecordedRequest.decode(overHit[...]) } throws: { ($0 as? EventRecordingError)?.description.contains("hit_tokens") == true }
    }
}
