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
