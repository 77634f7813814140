import Foundation
import Testing

/// `kvcache blend` on one shared MuSiQue sample with short passages (the debug build's model is slow):
/// the documented `--json` keys, the exactness of full prefill, prefix mode and ratio 1, and one-line
/// errors for bad data files.
@Suite("kvcache blend")
struct BlendCLITests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path
    static let data = root + "/../shared/data/cacheblend_musique/musique_s.json"
    static let model = root + "/../shared/models/SmolLM2-135M-Instruct.Q4_1.gguf"
    static var available: Bool {
        (FileManager.default.fileExists(atPath: data) && FileManager.default.fileExists(atPath: model))
            || ProcessInfo.processInfo.environment["CI"] != nil
    }

    @Test(.enabled(if: available, "the shared model and MuSiQue file are absent"))
    func reportsEveryModeWithTheDocumentedKeys() throws {
        let o = try CLIJSONTests.json(["blend", "--model", Self.model, "--data", Self.data, "--limit", "1", "--max-tokens", "2",
                                       "--passages", "3", "--passage-tokens", "40", "--ratio", "0.3,1", "--json"])
        #expect(o["samples"] as? Int == 1)
        let runs = try #require(o["runs"] as? [[String: Any]])
        #expect(runs.map { $0["mode"] as? String } == ["full-prefill", "prefix", "full-reuse", "blend", "blend", "random", "random", "cci", "cci"])
        for run in runs {
            CLIJSONTests.expectKeys(run, ["mode", "ratio", "mean_kl", "median_kl", "greedy_agreement", "exact_match", "f1",
                                          "prefill_seconds", "prefill_ratio", "recomputed_tokens", "context_tokens"])
        }
        func kl(_ i: Int) -> Double { runs[i]["mean_kl"] as? Double ?? .infinity }
        #expect(kl(0) == 0 && kl(1) < 1e-6)                          // full prefill and exact prefix
        for i in [4, 6, 8] { #expect(kl(i) < 1e-6, "\(runs[i]["mode"]!) at ratio 1") }
        #expect(kl(2) > kl(4))                                        // full reuse is not exact
        #expect(runs[2]["recomputed_tokens"] as? Double ?? 0 < runs[3]["recomputed_tokens"] as? Double ?? 0)
        #expect(runs[0]["prefill_ratio"] as? Double == 1)
    }

    /// `--tiers`: the sample's chunks come back from host and disk with the KV that was stored (the blend's
    /// logits exactly), and with a disk slower than recomputing, the controller recomputes those instead;
    /// without `--disk-gbps` the tiers' measured bandwidths decide.
    @Test(.enabled(if: available, "the shared model and MuSiQue file are absent"))
    func tiersFetchTheStoredKVOrRecomputeAsTheControllerDecides() throws {
        func tiered(_ diskGBps: String?, _ extra: [String] = []) throws -> [String: Any] {
            let o = try CLIJSONTests.json(["blend", "--model", Self.model, "--data", Self.data, "--limit", "1", "--max-tokens", "1",
                                           "--passages", "3", "--passage-tokens", "24", "--ratio", "0.15", "--select", "hkvd",
                                           "--tiers", "--json"] + (diskGBps.map { ["--disk-gbps", $0] } ?? []) + extra)
            let runs = try #require(o["runs"] as? [[String: Any]])
            #expect(runs.map { $0["mode"] as? String } == ["full-prefill", "prefix", "full-reuse", "blend", "blend-tiered"])
            return runs[4]
        }
        let fast = try tiered("2")
        let host = fast["loaded_from_host"] as? Int ?? -1, disk = fast["loaded_from_disk"] as? Int ?? -1
        #expect(disk >= 1 && host + disk == 3 && fast["recomputed_chunks"] as? Int == 0)
        #expect(fast["fetched_kv_equal"] as? Bool == true && fast["max_logit_difference_vs_blend"] as? Double == 0)
        // With the slow disk, every chunk is either loaded from host or recomputed, at least one recomputed;
        // which chunks sit on disk is the same every run, and so is the result.
        let slow = try tiered("0.000001")
        let recomputed = slow["recomputed_chunks"] as? Int ?? -1
        #expect(slow["loaded_from_disk"] as? Int == 0 && recomputed >= 1 && (slow["loaded_from_host"] as? Int ?? -1) + recomputed == 3)
        #expect(slow["fetched_kv_equal"] as? Bool == true)
        #expect(slow["disk_bandwidth"] as? String == "given" && slow["disk_bytes_per_second"] as? Double == 1000)
        let again = try tiered("0.000001")
        for field in ["loaded_from_host", "recomputed_chunks"] { #expect(again[field] as? Int == slow[field] as? Int, "\(field)") }
        #expect(again["mean_kl"] as? Double == slow["mean_kl"] as? Double)
        // A disk that loads slower than 0.15's recompute but still pays: the loaded chunks' budgets rise to the
        // controller's ratio (the first chunk is an exact span: budget 0), so more tokens are recomputed.
        let middling = try tiered("0.01", ["--recompute-ms-per-token", "10"])
        #expect(middling["loaded_from_disk"] as? Int ?? 0 >= 1 && middling["recomputed_chunks"] as? Int == 0)
        #expect(middling["raised_budgets"] as? Int ?? 0 >= 1 && fast["raised_budgets"] as? Int == 0)
        #expect(middling["recomputed_tokens"] as? Double ?? 0 > fast["recomputed_tokens"] as? Double ?? .infinity)
        // By default the controller reads the tiers' measured bandwidths: every chunk is loaded or recomputed.
        let measured = try tiered(nil)
        #expect(measured["disk_bandwidth"] as? String == "measured" && measured["fetched_kv_equal"] as? Bool == true)
        #expect((measured["host_bytes_per_second"] as? Double ?? 0) > 0 && (measured["disk_bytes_per_second"] as? Double ?? 0) > 0)
        #expect([measured["loaded_from_host"], measured["loaded_from_disk"], measured["recomputed_chunks"]].map { $0 as? Int ?? -9 }.reduce(0, +) == 3)
    }

    @Test func badDataFilesAreOneLineErrorsNamingTheFile() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("blend-cli-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        for (name, content, reason) in [("object.json", "{\"question\": \"q\"}", "not a JSON array of samples"),
                                        ("noctx.json", "[{\"question\": \"q\", \"ctxs\": [{\"text\": \"t\"}]}, {\"question\": \"q\"}]",
                                         ":2: sample 2: no array \"ctxs\""),
                                        ("answers.json", "[{\"question\": \"q\", \"answers\": [1], \"ctxs\": []}]", "non-string")] {
            let path = dir.appendingPathComponent(name).path
            try Data(content.utf8).write(to: URL(fileURLWithPath: path))
            let r = try CLIJSONTests.run(["blend", "--model", Self.model, "--data", path, "--json"])
            #expect(r.status != 0)
            #expect(r.err.contains(path) && r.err.contains(reason), "\(r.err)")
            #expect(r.out.isEmpty)
        }
        let r = try CLIJSONTests.run(["blend", "--data", dir.appendingPathComponent("missing.json").path, "--ratio", "2"])
        #expect(r.status != 0 && r.err.contains("--ratio"))
    }
}
