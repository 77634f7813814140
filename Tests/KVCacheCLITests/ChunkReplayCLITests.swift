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
}
