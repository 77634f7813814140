import ArgumentParser
import Foundation
import KVCache
import KVSimulation

/// `kvcache replay`: runs a trace through the real cache (sequential mode) and reports hit rates.
struct ReplayCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replay",
        abstract: "Replay a trace through the cache and report hit rates.",
        discussion: """
            Without --trace, replays the embedded default: the first 1,000 requests of the Mooncake \
            FAST'25 synthetic trace (Apache-2.0) with a capacity of 8,192 blocks, small enough to evict.
            Sequential mode processes requests one at a time in file order (see SequentialReplay).
            """)

    enum Mode: String, ExpressibleByArgument { case sequential, timed }

    @Option(help: "Trace file (Mooncake JSONL). Default: the embedded sample.")
    var trace: String?

    @Option(help: "sequential (hit rates) or timed (scheduler on a modelled GPU).")
    var mode: Mode = .sequential

    @Option(help: "Eviction policy, or a comma-separated list to compare side by side (lru, fifo, lfu).")
    var policy: String = "lru"

    @Option(help: "Blocks the cache holds.")
    var capacityBlocks: Int = 8192

    @Option(help: "Tokens per trace hash block.")
    var blockTokens: Int = 512

    @Flag(help: "Count and skip malformed lines instead of stopping at the first.")
    var skipBadLines = false

    @Flag(help: "Print one JSON object on stdout.")
    var json = false

    func validate() throws {
        guard capacityBlocks >= 1 else { throw ValidationError("--capacity-blocks must be at least 1") }
        guard (1 ... 1024).contains(blockTokens) else { throw ValidationError("--block-tokens must be in 1...1024") }
        _ = try policies()
    }

    func policies() throws -> [EvictionPolicyKind] {
        try policy.split(separator: ",").map { name in
            guard let kind = EvictionPolicyKind(rawValue: String(name)) else {
                throw ValidationError("unknown policy '\(name)' (choose from \(EvictionPolicyKind.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            return kind
        }
    }

    func run() throws {
        guard mode == .sequential else {
            throw ValidationError("--mode timed is not available yet")
        }
        let (path, loaded) = try loadTrace()
        var runs: [[String: Any]] = []
        for kind in try policies() {
            let start = ContinuousClock.now
            var replay = try SequentialReplay(capacityBlocks: capacityBlocks, blockTokens: blockTokens, policy: kind)
            let total = loaded.requests.count
            for (i, request) in loaded.requests.enumerated() {
                try replay.replay(request)
                if total >= 20_000 && (i + 1) % (total / 10) == 0 {
                    note("replay \(kind.rawValue): \(i + 1)/\(total) requests")
                }
            }
            let wall = ContinuousClock.now - start
            let r = replay.result
            runs.append([
                "policy": kind.rawValue,
                "requests": r.requests,
                "input_tokens": r.inputTokens,
                "hit_tokens": r.hitTokens,
                "token_hit_rate": r.tokenHitRate,
                "evicted_blocks": r.evictedBlocks,
                "peak_blocks": r.peakBlocks,
                "bad_lines": loaded.skippedLines,
                "capacity_blocks": capacityBlocks,
                "block_tokens": blockTokens,
                "mode": mode.rawValue,
                "trace": path,
                "wall_seconds": Double(wall.components.seconds) + Double(wall.components.attoseconds) * 1e-18,
            ])
        }
        if json {
            try JSONReport.print(runs.count == 1 ? runs[0] : ["runs": runs])
        } else {
            printTable(runs, path: path, skipped: loaded)
        }
    }

    private func loadTrace() throws -> (String, LoadedTrace) {
        if let trace {
            do {
                return (trace, try MooncakeTrace.read(path: trace, blockTokens: blockTokens, skipBadLines: skipBadLines))
            } catch { throw CLIError(error.description) }
        }
        guard let url = Bundle.module.url(forResource: "mooncake-synthetic-1000", withExtension: "jsonl"),
              let data = try? Data(contentsOf: url) else {
            throw CLIError("the embedded default trace is missing from the resource bundle")
        }
        do {
            return ("embedded:mooncake-synthetic-1000.jsonl",
                    try MooncakeTrace.parse(data, path: "embedded", blockTokens: blockTokens, skipBadLines: skipBadLines))
        } catch { throw CLIError(error.description) }
    }

    private func printTable(_ runs: [[String: Any]], path: String, skipped: LoadedTrace) {
        print("trace \(path): \(runs[0]["requests"]!) requests, \(runs[0]["input_tokens"]!) input tokens; "
              + "capacity \(capacityBlocks) blocks x \(blockTokens) tokens; sequential mode")
        if skipped.skippedLines > 0 { print("skipped \(skipped.skippedLines) bad lines (first: \(skipped.firstSkipped ?? ""))") }
        let header = ["policy", "hit rate", "hit tokens", "evicted", "peak blocks", "wall s"]
        var rows = [header]
        for r in runs {
            rows.append([r["policy"] as! String, String(format: "%.4f", r["token_hit_rate"] as! Double),
                         "\(r["hit_tokens"]!)", "\(r["evicted_blocks"]!)", "\(r["peak_blocks"]!)",
                         String(format: "%.3f", r["wall_seconds"] as! Double)])
        }
        let widths = header.indices.map { c in rows.map { $0[c].count }.max()! }
        for row in rows {
            print(row.indices.map { row[$0].padding(toLength: widths[$0], withPad: " ", startingAt: 0) }.joined(separator: "  "))
        }
    }
}
