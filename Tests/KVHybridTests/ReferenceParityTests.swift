import Foundation
import KVData
import Testing
@testable import KVHybrid

/// The Marconi simulator's per-request results (`../shared/data/marconi/reference`) on a slice of each
/// shared trace: vllm+, sglang+ and marconi-sim must give its hit tokens, checkpoints, cached tokens and
/// clock on every request. The slices cover the first evictions and the alpha tuning (chat at 1 GB:
/// N0 = 24, W = 120, alpha 0.1; sysprompt at 2.5 GB: N0 = 7, W = 35, alpha 0.4). Skipped with a message
/// when the data is absent, except under CI, where they fail.
enum MarconiData {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("shared/data/marconi").path

    static var isAvailable: Bool {
        FileManager.default.fileExists(atPath: folder + "/chat.jsonl.gz") || ProcessInfo.processInfo.environment["CI"] != nil
    }

    static let missingMessage: Comment = "Marconi traces not found in ../shared/data/marconi"

    static func requests(_ trace: String, first count: Int) throws -> [HybridReplay.Request] {
        let t = try MarconiTrace.read(ByteSource(path: folder + "/\(trace).jsonl.gz"))
        return t.requests.prefix(count).map { HybridReplay.Request(input: $0.input, output: $0.output) }
    }

    /// Rows of `reference/<name>.csv`: hit_tokens, states_after, kv_tokens_after, logical_ts_after.
    static func reference(_ name: String, first count: Int) throws -> [[Int]] {
        let text = try String(contentsOfFile: folder + "/reference/\(name).csv", encoding: .utf8)
        return text.split(whereSeparator: \.isNewline).dropFirst().prefix(count).map { line in
            let f = line.split(separator: ",", omittingEmptySubsequences: false)
            return [3, 4, 5, 6].map { Int(f[$0])! }
        }
    }
}

@Suite("parity with the Marconi simulator", .enabled(if: MarconiData.isAvailable, MarconiData.missingMessage))
struct ReferenceParityTests {
    @Test(arguments: [("chat", "1", 150), ("sysprompt", "2.5", 60)])
    func perRequestFiguresMatch(trace: String, gb: String, count: Int) throws {
        let requests = try MarconiData.requests(trace, first: count)
        let capacity = Int64(Double(gb)! * 1e9)
        for (policy, name) in [(HybridPolicy.vllmPlus, "vllm"), (.sglangPlus, "sglang"), (.marconiSim, "marconi")] {
            let expected = try MarconiData.reference("\(trace)_\(name)_\(gb)GB", first: count)
            let r = HybridReplay.run(requests, model: .hybrid7B, capacityBytes: capacity, policy: policy)
            try #require(r.steps.count == expected.count)
            for (i, s) in r.steps.enumerated() {
                let got = [s.hitTokens, s.checkpointsAfter, s.cachedTokensAfter, Int(s.clockAfter)]
                if got != expected[i] {
                    Issue.record("\(trace) \(gb) GB \(policy.rawValue), request \(i): \(got) != reference \(expected[i])")
                    break
                }
            }
        }
    }

    @Test func tunedAlphaMatches() throws {
        let requests = try MarconiData.requests("sysprompt", first: 60)
        let r = HybridReplay.run(requests, model: .hybrid7B, capacityBytes: 2_500_000_000, policy: .marconiSim)
        #expect(r.firstEvictionAt == 7)
        #expect(r.window == 35)
        #expect(r.alpha == 0.4)
    }
}
