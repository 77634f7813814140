import Foundation
import Testing

/// Runs the built `kvcache` (next to the test bundle in the build folder) and checks the `--json` keys
/// the README documents, and a few values that the sequential semantics fix exactly.
@Suite("kvcache --json")
struct CLIJSONTests {
    static let executable: URL = {
        let bundle = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
        return bundle.appendingPathComponent("kvcache")
    }()

    static func fixture(_ name: String) throws -> String {
        guard let url = Bundle.module.url(forResource: "Fixtures/\(name)", withExtension: nil) else {
            throw CocoaError(.fileNoSuchFile)
        }
        return url.path
    }

    /// Runs `kvcache arguments` (in `environment`, else this process's; standard input: the file `input`
    /// when given); returns the exit status, stdout and stderr.
    static func run(_ arguments: [String], environment: [String: String]? = nil,
                    input: String? = nil) throws -> (status: Int32, out: Data, err: String) {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        if let environment { process.environment = environment }
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        if let input { process.standardInput = try FileHandle(forReadingFrom: URL(fileURLWithPath: input)) }
        try process.run()
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, outData, String(decoding: errData, as: UTF8.self))
    }

    static func json(_ arguments: [String]) throws -> [String: Any] {
        let r = try run(arguments)
        #expect(r.status == 0, "kvcache \(arguments) failed: \(r.err)")
        let object = try JSONSerialization.jsonObject(with: r.out) as? [String: Any]
        return try #require(object)
    }

    /// The one run of a report (`{"schema_version": 1, "command", ..., "runs": [run]}`).
    static func onlyRun(_ report: [String: Any]) throws -> [String: Any] {
        #expect(report["schema_version"] as? Int == 1)
        let runs = try #require(report["runs"] as? [[String: Any]])
        #expect(runs.count == 1)
        return try #require(runs.first)
    }

    static func expectKeys(_ object: [String: Any], _ keys: [String]) {
        for key in keys { #expect(object[key] != nil, "missing key \(key)") }
    }

    @Test func sequentialReplayPrintsTheDocumentedKeysAndFigures() throws {
        let top = try Self.json(["replay", "--json"])
        Self.expectKeys(top, ["schema_version", "mode", "trace", "range", "bad_lines", "block_tokens", "cost_model", "runs"])
        #expect(top["schema_version"] as? Int == 1)
        #expect(top["mode"] as? String == "sequential")
        let only = try #require(top["runs"] as? [[String: Any]])
        #expect(only.count == 1)
        let o = try #require(only.first)
        Self.expectKeys(o, ["policy", "capacity_blocks", "requests", "input_tokens", "hit_tokens", "share_of_belady",
                            "token_hit_rate", "saved_prefill_s", "evicted_blocks", "peak_blocks", "wall_s"])
        // The embedded default at 8,192 blocks, LRU (README: hit rate 0.0976).
        #expect(o["policy"] as? String == "lru" && o["capacity_blocks"] as? Int == 8192)
        #expect(o["requests"] as? Int == 1000)
        #expect(o["input_tokens"] as? Int == 11_851_558)
        #expect(o["hit_tokens"] as? Int == 1_156_574)
        #expect(o["evicted_blocks"] as? Int == 13_329)
        #expect(o["share_of_belady"] is NSNull)
        // Policies x capacities in one call, policies inner; each share is of the bound at its capacity.
        let several = try Self.json(["replay", "--policy", "lru,pgdsf,belady", "--capacity-blocks", "300,3000", "--json"])
        let runs = try #require(several["runs"] as? [[String: Any]])
        #expect(runs.map { $0["policy"] as? String } == ["lru", "pgdsf", "belady", "lru", "pgdsf", "belady"])
        #expect(runs.map { $0["capacity_blocks"] as? Int } == [300, 300, 300, 3000, 3000, 3000])
        for (i, run) in runs.enumerated() {
            Self.expectKeys(run, ["token_hit_rate", "saved_prefill_s", "wall_s"])
            let bound = try #require(runs[i / 3 * 3 + 2]["hit_tokens"] as? Int)
            let hits = try #require(run["hit_tokens"] as? Int)
            #expect(hits <= bound)
            let share = try #require(run["share_of_belady"] as? Double)
            #expect(abs(share - Double(hits) / Double(bound)) < 1e-9)
        }
        // The held-out second half replays the later 500 requests only.
        let half = try Self.json(["replay", "--range", "0.5:1", "--policy", "belady", "--capacity-blocks", "1000", "--json"])
        #expect((half["runs"] as? [[String: Any]])?.first?["requests"] as? Int == 500)
        // After an uncounted warm-up on the first half, the same 500 requests, and more of them hit.
        let warm = try Self.json(["replay", "--range", "0.5:1", "--warm-up", "--policy", "belady", "--capacity-blocks", "1000", "--json"])
        let cold = try #require((half["runs"] as? [[String: Any]])?.first)
        let warmed = try #require((warm["runs"] as? [[String: Any]])?.first)
        #expect(warmed["requests"] as? Int == 500 && warm["warm_up"] as? Bool == true)
        #expect(try #require(warmed["hit_tokens"] as? Int) > (try #require(cold["hit_tokens"] as? Int)))
    }

    @Test func replayRefusesBadPolicyCapacityAndRangeLists() throws {
        for (args, says) in [(["--policy", "lru,nope"], "unknown policy 'nope'"),
                             (["--capacity-blocks", "100,0"], "--capacity-blocks"),
                             (["--capacity-blocks", "100,"], "--capacity-blocks"),
                             (["--range", "0.5:0.5"], "--range"), (["--range", "1"], "--range"),
                             (["--policy", "belady", "--cpu-blocks", "10"], "device pool only")] {
            let r = try Self.run(["replay"] + args)
            #expect(r.status != 0)
            #expect(r.err.contains(says), "\(args): \(r.err)")
        }
    }

    @Test func timedReplayPrintsTheDocumentedKeys() throws {
        let o = try Self.json(["replay", "--mode", "timed", "--trace", try Self.fixture("mooncake_40.jsonl"),
                               "--kv-gib", "0.5", "--compare", "on-demand,predicted", "--cpu-gib", "1", "--json"])
        Self.expectKeys(o, ["schema_version", "command", "mode", "times", "trace", "format", "trace_requests", "model",
                            "hardware", "runs", "wall_s"])
        #expect(o["mode"] as? String == "timed" && o["times"] as? String == "modelled")
        #expect(o["format"] as? String == "mooncake" && o["trace_requests"] as? Int == 40)
        let runs = try #require(o["runs"] as? [[String: Any]])
        #expect(runs.map { $0["reservation"] as? String } == ["on-demand", "predicted"])
        for run in runs {
            Self.expectKeys(run, ["requests", "output_tokens_per_s", "ttft_p50_s", "ttft_p99_s", "tpot_p50_s",
                                  "preemptions", "prefill_tokens", "tier_load_tokens", "tier_load_bytes",
                                  "ttft_p50_s_without_tiers", "ttft_p99_s_without_tiers",
                                  "prefill_tokens_without_tiers", "kv_gib", "cpu_gib", "capacity_blocks",
                                  "ttft_percentiles_s", "tpot_percentiles_s", "e2e_percentiles_s", "wall_s"])
            #expect(run["requests"] as? Int == 40)
            #expect(run["kv_gib"] as? Double == 0.5 && run["cpu_gib"] as? Int == 1)
            // The percentiles are a CDF: 101 points, not decreasing, the median the reported p50.
            let ttft = try #require(run["ttft_percentiles_s"] as? [Double])
            #expect(ttft.count == 101 && zip(ttft, ttft.dropFirst()).allSatisfy { $0 <= $1 })
            #expect(abs(ttft[50] - (try #require(run["ttft_p50_s"] as? Double))) < 1e-12)
        }
    }

    @Test func predictEvalPrintsTheDocumentedKeys() throws {
        let top = try Self.json(["predict", "eval", "--history", "--data", try Self.fixture("mooncake_40.jsonl"), "--json"])
        #expect(top["command"] as? String == "predict eval")
        let o = try Self.onlyRun(top)
        Self.expectKeys(o, ["predictor", "online", "format", "examples", "mae", "mae_ratio", "bucket_accuracy",
                            "underpredict_rate", "baseline_mae", "baseline_bucket_accuracy", "baseline_underpredict_rate",
                            "ns_per_prediction"])
        #expect(o["predictor"] as? String == "history" && o["format"] as? String == "mooncake")
        #expect(o["examples"] as? Int == 20)   // the later half of 40 requests by arrival
    }

    /// `bench core --control` times the serving cycle with events off on both sides (no publisher, so no
    /// publisher time) and says so in the report; a plain run has the publisher working.
    @Test func benchCoreControlRunHasNoPublisherOnEitherSide() throws {
        let control = try Self.onlyRun(try Self.json(["bench", "core", "--repetitions", "1", "--control", "--json"]))
        #expect(control["control"] as? Bool == true)
        #expect(control["publisher_ns_per_block"] as? Double == 0)
        let plain = try Self.onlyRun(try Self.json(["bench", "core", "--repetitions", "1", "--json"]))
        #expect(plain["control"] as? Bool == false)
        #expect((plain["publisher_ns_per_block"] as? Double ?? 0) > 0)
    }

    @Test func aMalformedLineNamesFileAndLine() throws {
        let path = try Self.fixture("mooncake_bad.jsonl")
        let r = try Self.run(["replay", "--trace", path, "--json"])
        #expect(r.status != 0)
        #expect(r.err.contains("\(path):3: missing field"))
        let skipped = try Self.json(["replay", "--trace", path, "--skip-bad-lines", "--json"])
        #expect(skipped["bad_lines"] as? Int == 1)
        #expect((skipped["runs"] as? [[String: Any]])?.first?["requests"] as? Int == 2)
    }
}
