import Foundation
import Testing

/// `kvcache bench trace`: with a pool that never evicts, its hit tokens must equal an independent
/// count of the trace's reusable prefix at the same block size, and a pool too small to hold the
/// trace must evict and hit less.
@Suite("kvcache bench trace")
struct BenchTraceCLITests {
    /// Hit tokens of an unbounded prefix cache at `blockTokens` tokens per block when block `b` of
    /// the trace holds tokens derived from its hash id only: a block is identified by the hash ids up
    /// to the one it lies in and its index; a request hits its longest run of leading blocks seen in
    /// earlier requests, at most `input_length - 1` tokens (the last token is always computed).
    static func unboundedHitTokens(trace path: String, blockTokens: Int) throws -> Int {
        struct Row: Decodable { var input_length: Int; var hash_ids: [Int] }
        var seen = Set<[Int]>(), hits = 0
        for line in try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n") {
            let row = try JSONDecoder().decode(Row.self, from: Data(line.utf8))
            let full = row.input_length / blockTokens
            let keys = (0 ..< full).map { j in Array(row.hash_ids[...(j * blockTokens / 512)]) + [j] }
            var k = 0
            while k < full && seen.contains(keys[k]) { k += 1 }
            hits += min(k, (row.input_length - 1) / blockTokens) * blockTokens
            seen.formUnion(keys)
        }
        return hits
    }

    @Test(arguments: [16, 512])
    func anUnboundedPoolHitsExactlyTheReusablePrefix(blockTokens: Int) throws {
        let trace = try CLIJSONTests.fixture("mooncake_40.jsonl")
        let o = try CLIJSONTests.json(["bench", "trace", "--trace", trace, "--block-tokens", "\(blockTokens)",
                                       "--pool-blocks", "1000000,\(blockTokens == 16 ? 400 : 12)", "--repetitions", "1", "--json"])
        let runs = try #require(o["runs"] as? [[String: Any]])
        try #require(runs.count == 2)
        #expect(runs[0]["hit_tokens"] as? Int == (try Self.unboundedHitTokens(trace: trace, blockTokens: blockTokens)))
        #expect(runs[0]["evicted_blocks"] as? Int == 0)
        #expect((runs[1]["evicted_blocks"] as? Int ?? 0) > 0)
        #expect((runs[1]["hit_tokens"] as? Int ?? .max) <= (runs[0]["hit_tokens"] as? Int ?? 0))
        for run in runs {
            CLIJSONTests.expectKeys(run, ["pool_blocks", "requests", "prompt_blocks", "add_ns_per_block",
                                          "lookup_ns_per_block", "allocate_ns_per_block", "commit_ns_per_block",
                                          "free_ns_per_block", "serve_ns_per_block"])
        }
    }

    @Test func aBadPoolListIsRefused() throws {
        let r = try CLIJSONTests.run(["bench", "trace", "--pool-blocks", "12,x"])
        #expect(r.status != 0)
        #expect(r.err.contains("--pool-blocks"))
    }
}
