import Foundation
import KVCache
import KVEvents
import Testing

/// `kvcache replay --record-events` then `kvcache trace export` then `kvcache replay` of the export:
/// the recording's request frames make the round trip exact, request by request (hit and input tokens)
/// and in total, at every policy, with and without eviction; the recorded events agree with every
/// recorded hit. The same recording without its request frames (what a live stream gives) exports the
/// requests that stored blocks only, and says so.
@Suite("kvcache trace export")
struct EventExportCLITests {
    static func records(_ path: String) throws -> [[String: Any]] {
        try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map {
            try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
    }

    static func field(_ records: [[String: Any]], _ key: String) -> [Int?] { records.map { $0[key] as? Int } }

    /// The version 1 recording of the same stream: the event batches of a version 2 recording, without
    /// their kind bytes and without the request frames.
    static func eventsOnly(_ v2: Data) throws -> Data {
        let bytes = [UInt8](v2)
        try #require(bytes.starts(with: Array("KVEVREC2".utf8)))
        var out = Data("KVEVREC1".utf8)
        var offset = 8
        while offset < bytes.count {
            let n = bytes[offset..<offset + 4].reduce(0) { $0 << 8 | Int($1) }
            if bytes[offset + 4] == 0 {
                let m = UInt32(n - 1)
                out += [UInt8(m >> 24), UInt8(m >> 16 & 0xff), UInt8(m >> 8 & 0xff), UInt8(m & 0xff)]
                out += bytes[offset + 5..<offset + 4 + n]
            }
            offset += 4 + n
        }
        return out
    }

    @Test(arguments: [("lru", 100_000), ("lru", 60), ("fifo", 60), ("lfu", 60), ("probation", 60), ("marking", 40),
                      ("pgdsf", 60)])
    func theExportReplaysToTheSameHits(policy: String, capacity: Int) throws {
        let dir = try ReportSchemaTests.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let trace = try CLIJSONTests.fixture("mooncake_40.jsonl")
        let events = dir + "/events.kvev", exported = dir + "/exported.jsonl"
        let replay = ["replay", "--policy", policy, "--capacity-blocks", "\(capacity)", "--json"]
        let original = try CLIJSONTests.onlyRun(try CLIJSONTests.json(replay + ["--trace", trace, "--record-events", events,
                                                                                "--requests-out", dir + "/a.jsonl"]))
        let export = try CLIJSONTests.onlyRun(try CLIJSONTests.json(["trace", "export", events, "-o", exported, "--json"]))
        let replayed = try CLIJSONTests.onlyRun(try CLIJSONTests.json(replay + ["--trace", exported, "--requests-out", dir + "/b.jsonl"]))
        let before = try Self.records(dir + "/a.jsonl"), after = try Self.records(dir + "/b.jsonl")
        #expect(before.count == 40 && after.count == 40)
        #expect(export["exact"] as? Bool == true && export["request_frames"] as? Int == 40 && export["requests"] as? Int == 40)
        #expect(export["hit_mismatches"] as? Int == 0)
        #expect(export["block_tokens"] as? Int == 512)
        // Request by request and in total: the same hit tokens and the same prompts.
        #expect(Self.field(after, "hit_tokens") == Self.field(before, "hit_tokens"))
        #expect(Self.field(after, "input_tokens") == Self.field(before, "input_tokens"))
        for key in ["requests", "input_tokens", "hit_tokens", "evicted_blocks", "peak_blocks"] {
            #expect(replayed[key] as? Int == original[key] as? Int, "\(policy) at \(capacity): \(key)")
        }
        #expect(export["recorded_hit_tokens"] as? Int == original["hit_tokens"] as? Int)
        if capacity == 100_000 {
            // The fixture has requests served entirely from the cache: the case the request frames are for.
            #expect(before.contains { $0["hit_tokens"] as? Int == $0["input_tokens"] as? Int })
        }

        // Without request frames: the requests that stored blocks only, each with its own hit when
        // nothing is evicted; the report says the export is not exact.
        let v1 = dir + "/events-v1.kvev"
        try Self.eventsOnly(try Data(contentsOf: URL(fileURLWithPath: events))).write(to: URL(fileURLWithPath: v1))
        let r = try CLIJSONTests.run(["trace", "export", v1, "-o", dir + "/v1.jsonl", "--json"])
        #expect(r.status == 0 && r.err.contains("no request frames"), "\(r.err)")
        let partial = try CLIJSONTests.onlyRun(try #require(try JSONSerialization.jsonObject(with: r.out) as? [String: Any]))
        let stored = before.filter { ($0["hit_tokens"] as? Int ?? 0) < ($0["input_tokens"] as? Int ?? 0) }
        #expect(partial["exact"] as? Bool == false && partial["request_frames"] as? Int == 0)
        #expect(partial["requests"] as? Int == stored.count)
        #expect(partial["stored_events"] as? Int == export["stored_events"] as? Int)
        if capacity == 100_000 {
            _ = try CLIJSONTests.json(replay + ["--trace", dir + "/v1.jsonl", "--requests-out", dir + "/c.jsonl"])
            #expect(Self.field(try Self.records(dir + "/c.jsonl"), "hit_tokens") == Self.field(stored, "hit_tokens"))
        }
    }

    @Test func aDamagedRecordingIsOneLineNamingTheFrame() throws {
        let dir = try ReportSchemaTests.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let events = dir + "/events.kvev"
        _ = try CLIJSONTests.json(["replay", "--range", "0.95:1", "--capacity-blocks", "300", "--record-events", events, "--json"])
        var bytes = try Data(contentsOf: URL(fileURLWithPath: events))
        #expect(bytes.count > 100)
        for (name, damaged, says) in [("truncated", bytes.prefix(bytes.count - 3), "truncated"),
                                      ("nomagic", bytes.dropFirst(8), "not a KV-event recording"),
                                      ("garbage", Data("KVEVREC1".utf8) + Data([0, 0, 0, 2, 0xc1, 0xc1]), "frame 1 (byte 8):"),
                                      ("badrequest", Data("KVEVREC2".utf8) + Data([0, 0, 0, 2, 1, 0x80]), "frame 1 (byte 8): not a request")] {
            let path = dir + "/" + name
            try damaged.write(to: URL(fileURLWithPath: path))
            let r = try CLIJSONTests.run(["trace", "export", path, "-o", dir + "/out.jsonl"])
            #expect(r.status == 1 && r.err.contains(path) && r.err.contains(says), "\(name): \(r.err)")
            #expect(r.err.split(separator: "\n").count == 1)
        }
        bytes.removeAll()
        // Recording needs one online policy at one capacity.
        let refused = try CLIJSONTests.run(["replay", "--policy", "lru,fifo", "--record-events", events])
        #expect(refused.status == 64 && refused.err.contains("--record-events"))
    }

    /// Recordings whose numbers are out of range, built with the publisher's own encoders: each ends in
    /// one line naming the file, the frame and its byte offset, and the reason (before the checks, a
    /// block size of 2^62 or two prompts of 2^62 tokens overflowed and trapped, and a gzip of zeros
    /// after the magic was held whole with one frame record per 4 bytes: 1 GB of zeros aborted).
    @Test func hostileNumbersInARecordingAreRefusedInOneLine() throws {
        let dir = try ReportSchemaTests.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let encoder = VLLMEventEncoder()
        let requestEncoder = RecordedRequestEncoder()
        func key(_ i: Int) -> BlockKey { BlockKey(lo: UInt64(i), hi: 7) }
        func batches(_ stores: [(keys: [BlockKey], parent: BlockKey?, size: Int)]) -> [UInt8] {
            var out = EventRecording.magic
            for (i, s) in stores.enumerated() {
                EventRecording.append(encoder.encode([.blockStored(keys: s.keys, parent: s.parent, blockTokens: s.size, tier: .device, tokens: [])],
                                                     timestamp: Double(i), dataParallelRank: 0), to: &out)
            }
            return out
        }
        func requests(_ rs: [(ts: Double, input: Int, size: Int, keys: Int)]) -> [UInt8] {
            var out = EventRecording.magicV2
            for r in rs {
                EventRecording.append(requestEncoder.encode(timestamp: r.ts, inputTokens: r.input, outputTokens: 1, blockTokens: r.size,
                                                            keys: (0..<r.keys).map(key), hitTokens: 0), kind: .request, to: &out)
            }
            return out
        }
        let huge = 1 << 62
        let cases: [(String, [UInt8], String)] = [
            ("blocksize", batches([([key(1)], nil, huge), ([key(2)], nil, huge)]),
             "frame 1 (byte 8): batch 1: block_size 4611686018427387904 is over the limit of 16777216 tokens"),
            ("input", requests([(0, huge, 16, 0), (1, huge, 16, 0)]),
             "frame 1 (byte 8): request 1: input_tokens 4611686018427387904 is over the limit of 16777216 tokens"),
            ("hashes", requests([(0, 16, 16, 3)]), "request 1: 3 block_hashes for input_tokens 16 at block_size 16 (at most 1)"),
            ("span", requests([(0, 16, 16, 1), (1e300, 16, 16, 1)]), "frame 2 (byte 124): request 2: its time 1e+300 is more than"),
            // A chain of one-block batches: each is a request of all its ancestors (quadratic), refused past a request's tokens.
            ("chain", batches((0..<1100).map { ([key($0 + 1)], $0 == 0 ? nil : key($0), 1 << 14) }),
             "batch 1025: a stored chain of 1025 or more blocks of 16384 tokens, over the limit of 16777216 tokens a request"),
            // One-token blocks: within the tokens of a request, but n batches export n^2/2 ids (2^27 took minutes).
            ("ids", batches((0..<5800).map { ([key($0 + 1)], $0 == 0 ? nil : key($0), 1) }),
             "batch 5793: more than 16777216 hash ids in the export"),
            ("zeros", EventRecording.magic + [UInt8](repeating: 0, count: 1 << 22), "frame 1 (byte 8): empty"),
        ]
        for (name, bytes, says) in cases {
            let path = dir + "/" + name + ".kvev"
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            let r = try CLIJSONTests.run(["trace", "export", path, "-o", dir + "/out.jsonl"])
            #expect(r.status == 1 && r.err.contains(path + ": ") && r.err.contains(says), "\(name): \(r.err)")
            #expect(r.err.split(separator: "\n").count == 1, "\(name): \(r.err)")
        }
    }
}
