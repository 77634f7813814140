import Foundation
import Testing

/// `kvcache replay --format ragpulse`: the unbounded figures equal those that the independent
/// tools/reference/ragpulse_replay.py prints for the same fixture (Fixtures/ragpulse):
/// prefix 445, chunk 100, recomputed 16 at ratio 0.15, input 890, template 69.
@Suite("kvcache replay --format ragpulse")
struct ChunkReplayCLITests {
    @Test func unboundedFiguresMatchThePythonReference() throws {
        let trace = try CLIJSONTests.fixture("ragpulse/0_trace_small.jsonl")
        let o = try CLIJSONTests.onlyRun(try CLIJSONTests.json(["replay", "--format", "ragpulse", "--trace", trace, "--chunk-reuse", "--json"]))
        #expect(o["requests"] as? Int == 5)
        #expect(o["input_tokens"] as? Int == 890)
        #expect(o["template_tokens"] as? Int == 69)
        #expect(o["prefix_hit_tokens"] as? Int == 445)
        #expect(o["chunk_hit_tokens"] as? Int == 100)
        #expect(o["recomputed_tokens"] as? Int == 16)
        #expect(o["reused_tokens"] as? Int == 545)
        #expect(o["saved_prefill_tokens"] as? Int == 529)
        // Detected without --format; prefix-only reuse recomputes nothing and saves only the prefix hits.
        let prefixOnly = try CLIJSONTests.onlyRun(try CLIJSONTests.json(["replay", "--trace", trace, "--json"]))
        #expect(prefixOnly["chunk_reuse"] as? Bool == false)
        #expect(prefixOnly["reused_tokens"] as? Int == 445 && prefixOnly["recomputed_tokens"] as? Int == 0)
    }

    @Test func aMissingSideFileFolderIsOneLineError() throws {
        let trace = try CLIJSONTests.fixture("ragpulse/0_trace_small.jsonl")
        let r = try CLIJSONTests.run(["replay", "--format", "ragpulse", "--trace", trace, "--side-files", "/nonexistent", "--json"])
        #expect(r.status != 0)
        #expect(r.err.contains("/nonexistent: cannot read"))
    }

    @Test func finiteCapacityRunsEachPolicyWithAndWithoutChunkReuse() throws {
        let trace = try CLIJSONTests.fixture("ragpulse/0_trace_small.jsonl")
        // A pool far larger than the trace: the unbounded figures (prefix 445, chunk 100, recomputed 16).
        let o = try CLIJSONTests.json(["replay", "--format", "ragpulse", "--trace", trace, "--capacity-tokens", "100000,1000%",
                                       "--policy", "lru,pgdsf", "--json"])
        let runs = try #require(o["runs"] as? [[String: Any]])
        #expect(o["schema_version"] as? Int == 1 && o["mode"] as? String == "ragpulse_finite")
        #expect(runs.count == 8)
        for r in runs {
            let chunk = r["chunk_reuse"] as? Bool == true
            #expect(r["prefix_hit_tokens"] as? Int == 445)
            #expect(r["chunk_hit_tokens"] as? Int == (chunk ? 100 : 0) && r["recomputed_tokens"] as? Int == (chunk ? 16 : 0))
            #expect((r["ttft_mean_s"] as? Double ?? -1) > 0 && r["evicted_nodes"] as? Int == 0 && r["host_hit_tokens"] as? Int == 0)
        }
        #expect(o["host_capacity_tokens"] as? Int == 0)
        // A pool of 1 token holds nothing: no hit; a bad size is one line.
        let tiny = try CLIJSONTests.json(["replay", "--format", "ragpulse", "--trace", trace, "--capacity-tokens", "1", "--json"])
        for r in try #require(tiny["runs"] as? [[String: Any]]) { #expect(r["reused_tokens"] as? Int == 0) }
        let bad = try CLIJSONTests.run(["replay", "--format", "ragpulse", "--trace", trace, "--capacity-tokens", "-5%", "--json"])
        #expect(bad.status != 0 && bad.err.contains("--capacity-tokens"))
        let badHost = try CLIJSONTests.run(["replay", "--format", "ragpulse", "--trace", trace, "--capacity-tokens", "100",
                                            "--host-capacity-tokens", "10%,20%", "--json"])
        #expect(badHost.status != 0 && badHost.err.contains("--host-capacity-tokens"))
    }

    /// A host tier: chunks evicted from a small pool come back from host as chunk hits; the pool itself is
    /// untouched (the same evictions, the same device hits), and the prefix-only runs are unchanged.
    @Test func aHostTierServesChunksEvictedFromThePool() throws {
        let trace = try CLIJSONTests.fixture("ragpulse/0_trace_small.jsonl")
        func runs(_ extra: [String]) throws -> [[String: Any]] {
            try #require(try CLIJSONTests.json(["replay", "--format", "ragpulse", "--trace", trace, "--capacity-tokens", "80%",
                                                "--chunk-block-tokens", "4", "--policy", "lru", "--json"] + extra)["runs"] as? [[String: Any]])
        }
        let without = try runs([]), with = try runs(["--host-capacity-tokens", "1000%"])
        func int(_ r: [String: Any], _ k: String) -> Int { r[k] as? Int ?? -1 }
        for k in ["prefix_hit_tokens", "chunk_hit_tokens", "evicted_nodes"] { #expect(int(with[0], k) == int(without[0], k), "\(k)") }
        #expect(int(with[0], "host_hit_tokens") == 0 && int(with[1], "host_hit_tokens") > 0)
        #expect(int(with[1], "chunk_hit_tokens") - int(with[1], "host_hit_tokens") == int(without[1], "chunk_hit_tokens"))
        #expect(int(with[1], "evicted_nodes") == int(without[1], "evicted_nodes") && int(with[1], "evicted_nodes") > 0)
    }
}
