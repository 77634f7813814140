import Foundation
import Testing

/// `kvcache replay --record-events` then `kvcache trace export`: the recorded KV events rebuilt as a
/// Mooncake trace replay to the same hits, request by request, for every request that stored blocks;
/// the requests served entirely from the cache publish no event and are the only ones missing.
@Suite("kvcache trace export")
struct EventExportCLITests {
    static func records(_ path: String) throws -> [[String: Any]] {
        try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map {
            try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
    }

    @Test(arguments: [100_000, 60])
    func theExportReplaysToTheSameHits(capacity: Int) throws {
        let dir = try ReportSchemaTests.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let trace = try CLIJSONTests.fixture("mooncake_40.jsonl")
        let events = dir + "/events.kvev", exported = dir + "/exported.jsonl"
        let original = try CLIJSONTests.json(["replay", "--trace", trace, "--capacity-blocks", "\(capacity)",
                                              "--record-events", events, "--requests-out", dir + "/a.jsonl", "--json"])
        let export = try CLIJSONTests.onlyRun(try CLIJSONTests.json(["trace", "export", events, "-o", exported, "--json"]))
        let replayed = try CLIJSONTests.json(["replay", "--trace", exported, "--capacity-blocks", "\(capacity)",
                                              "--requests-out", dir + "/b.jsonl", "--json"])
        let before = try Self.records(dir + "/a.jsonl"), after = try Self.records(dir + "/b.jsonl")
        let stored = before.filter { ($0["hit_tokens"] as? Int ?? 0) < ($0["input_tokens"] as? Int ?? 0) }
        #expect(stored.count < before.count, "the fixture should hold requests served entirely from the cache")
        #expect(export["requests"] as? Int == stored.count && after.count == stored.count)
        // Request by request, the same hit tokens (lengths are whole blocks in the export: a hit is whole blocks).
        #expect(after.map { $0["hit_tokens"] as? Int } == stored.map { $0["hit_tokens"] as? Int })
        let hits = { (o: [String: Any]) in (o["runs"] as? [[String: Any]])?.first?["hit_tokens"] as? Int ?? -1 }
        let fullHits = before.filter { !stored.map { $0["index"] as? Int }.contains($0["index"] as? Int) }
            .reduce(0) { $0 + ($1["hit_tokens"] as? Int ?? 0) }
        #expect(hits(replayed) == hits(original) - fullHits)
        #expect(export["block_tokens"] as? Int == 512)
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
                                      ("garbage", Data("KVEVREC1".utf8) + Data([0, 0, 0, 2, 0xc1, 0xc1]), "frame 1:")] {
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
}
