import Foundation
import Testing

/// Every eviction policy of the core's `EvictionPolicyKind` in every `kvcache replay` mode that runs
/// the core's cache: sequential on the device pool, sequential over host and disk tiers, and timed.
@Suite("kvcache replay --policy in every mode")
struct ReplayPolicyCLITests {
    static let corePolicies = ["lru", "fifo", "lfu", "pgdsf", "probation", "pgdsf-probation", "marking"]

    @Test(arguments: [[String](), ["--cpu-blocks", "64"], ["--cpu-blocks", "16", "--disk-blocks", "64"]])
    func sequentialRunsEveryPolicy(tiers: [String]) throws {
        let o = try CLIJSONTests.json(["replay", "--trace", try CLIJSONTests.fixture("mooncake_40.jsonl"),
                                       "--policy", Self.corePolicies.joined(separator: ","), "--capacity-blocks", "32",
                                       "--first-use-weight", "0.5", "--json"] + tiers)
        let runs = try #require(o["runs"] as? [[String: Any]])
        #expect(runs.map { $0["policy"] as? String } == Self.corePolicies.map { Optional($0) })
        for run in runs {
            #expect(run["requests"] as? Int == 40)
            #expect(run["mismatched_blocks"] as? Int == 0)
            #expect((run["evicted_blocks"] as? Int ?? 0) > 0, "\(run)")   // the pool is small enough to evict
        }
    }

    @Test func timedRunsEveryPolicyWithEachReservation() throws {
        let o = try CLIJSONTests.json(["replay", "--mode", "timed", "--trace", try CLIJSONTests.fixture("mooncake_40.jsonl"),
                                       "--kv-gib", "0.5", "--compare", "on-demand,predicted",
                                       "--policy", Self.corePolicies.joined(separator: ","), "--json"])
        let runs = try #require(o["runs"] as? [[String: Any]])
        let pairs = runs.map { "\($0["eviction_policy"] as? String ?? "?")/\($0["reservation"] as? String ?? "?")" }
        #expect(pairs == Self.corePolicies.flatMap { ["\($0)/on-demand", "\($0)/predicted"] })
        for run in runs { #expect(run["requests"] as? Int == 40) }
    }

    /// `--mode timed --pensieve`: the prefix cache (lru) and the retentions on the same arrivals, each run
    /// with its conversation figures; a policy outside the three is refused by name.
    @Test func timedPensieveRunsThePrefixCacheAndTheRetentions() throws {
        let trace = try CLIJSONTests.fixture("mooncake_40.jsonl")
        let dir = try ReportSchemaTests.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let o = try CLIJSONTests.json(["replay", "--mode", "timed", "--pensieve", "--trace", trace, "--kv-gib", "0.5",
                                       "--cpu-gib", "1", "--policy", "lru,pensieve,conversation-lru", "--json",
                                       "--requests-out", dir + "/requests.jsonl"])
        let lines = try String(contentsOfFile: dir + "/requests.jsonl", encoding: .utf8).split(separator: "\n")
        let policies = try lines.map { line in
            try #require(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])["policy"] as? String
        }
        #expect(policies == ["lru", "pensieve", "conversation-lru"].flatMap { Array(repeating: $0, count: 40) })
        let runs = try #require(o["runs"] as? [[String: Any]])
        #expect(runs.map { $0["retention"] as? String } == ["prefix-cache", "pensieve", "lru"])
        for run in runs {
            let history = try #require(run["history_tokens"] as? Int)
            let parts = ["history_gpu_hit_tokens", "history_host_hit_tokens", "recomputed_tokens"].compactMap { run[$0] as? Int }
            #expect(parts.count == 3 && parts.reduce(0, +) == history, "\(run)")
        }
        #expect(runs.map { $0["history_tokens"] as? Int }.allSatisfy { $0 == runs[0]["history_tokens"] as? Int })
        let r = try CLIJSONTests.run(["replay", "--mode", "timed", "--pensieve", "--trace", trace, "--policy", "fifo"])
        #expect(r.status != 0 && r.err.contains("lru, pensieve, conversation-lru"), "\(r.err)")
    }

    @Test func measuringPoliciesAreRefusedOutsideTheSequentialDevicePool() throws {
        for (args, says) in [(["--mode", "timed", "--policy", "belady"], "sequential mode only"),
                             (["--policy", "marking-noise", "--cpu-blocks", "8"], "device pool only")] {
            let r = try CLIJSONTests.run(["replay", "--trace", try CLIJSONTests.fixture("mooncake_40.jsonl")] + args)
            #expect(r.status != 0 && r.err.contains(says), "\(args): \(r.err)")
        }
    }
}
