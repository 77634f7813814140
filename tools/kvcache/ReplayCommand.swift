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

    @Option(help: "Trace file: Mooncake JSONL, Azure/Vidur/BurstGPT CSV, ShareGPT or CASTILLO (detected, or --format). Default: the embedded sample.")
    var trace: String?

    @Option(help: "sequential (hit rates) or timed (scheduler on a modelled GPU).")
    var mode: Mode = .sequential

    @Option(help: "Eviction policy, or a comma-separated list to compare side by side (lru, fifo, lfu, pgdsf). pgdsf prices blocks by their modelled recompute time on --model and --hardware.")
    var policy: String = "lru"

    @Option(help: "Blocks the cache holds.")
    var capacityBlocks: Int = 8192

    @Option(help: "Tokens per trace hash block (Mooncake); other formats set their own.")
    var blockTokens: Int = 512

    @Option(help: "Sequential mode: blocks of host memory (L2) under the device pool.")
    var cpuBlocks: Int = 0

    @Option(help: "Sequential mode: blocks on disk (L3), zstd-compressed, in --disk-dir.")
    var diskBlocks: Int = 0

    @Option(help: "Folder for the disk tier (emptied first). Default: a temporary folder, removed after.")
    var diskDir: String?

    @Flag(help: "Count and skip malformed lines instead of stopping at the first.")
    var skipBadLines = false

    @Flag(help: "Print one JSON object on stdout.")
    var json = false

    @OptionGroup(title: "Timed mode (--mode timed)")
    var timed: TimedReplayOptions

    func validate() throws {
        guard capacityBlocks >= 1 else { throw ValidationError("--capacity-blocks must be at least 1") }
        guard (1 ... 1024).contains(blockTokens) else { throw ValidationError("--block-tokens must be in 1...1024") }
        guard cpuBlocks >= 0, diskBlocks >= 0 else { throw ValidationError("--cpu-blocks and --disk-blocks must not be negative") }
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
        let (path, loaded) = try loadTrace()
        if mode == .timed {
            try TimedReplay.run(trace: loaded, label: path, json: json, options: timed)
            return
        }
        // One recompute cost for every policy: pgdsf's block prices and every run's saved_prefill_s.
        guard let model = ModelSpec.preset(named: timed.model) else {
            throw CLIError("unknown --model \(timed.model) (\(ModelSpec.presets.map(\.name).joined(separator: ", ")))")
        }
        guard let hardware = HardwareSpec.preset(named: timed.hardware) else {
            throw CLIError("unknown --hardware \(timed.hardware) (\(HardwareSpec.presets.map(\.name).joined(separator: ", ")))")
        }
        let cost = RooflineCostModel(model: model, hardware: hardware).recomputeCost
        var runs: [[String: Any]] = []
        for kind in try policies() {
            let start = ContinuousClock.now
            let diskFolder = diskBlocks > 0 ? try diskDir ?? makeTemporaryFolder() : nil
            defer { if diskDir == nil, let diskFolder { try? FileManager.default.removeItem(atPath: diskFolder) } }
            let B = loaded.requests.first(where: { $0.hashBlockTokens > 0 })?.hashBlockTokens ?? blockTokens
            var replay = try SequentialReplay(
                capacityBlocks: capacityBlocks, blockTokens: B, policy: kind, recomputeCost: cost,
                tiers: .init(hostBlocks: cpuBlocks, diskBlocks: diskBlocks, diskDirectory: diskFolder))
            let total = loaded.requests.count
            for (i, request) in loaded.requests.enumerated() {
                try replay.replay(request)
                if total >= 20_000 && (i + 1) % (total / 10) == 0 {
                    note("replay \(kind.rawValue): \(i + 1)/\(total) requests")
                }
            }
            replay.finish()
            let wall = ContinuousClock.now - start
            let r = replay.result
            runs.append([
                "policy": kind.rawValue,
                "requests": r.requests,
                "input_tokens": r.inputTokens,
                "hit_tokens": r.hitTokens,
                "hit_tokens_l1": r.hitTokensL1,
                "hit_tokens_l2": r.hitTokensL2,
                "hit_tokens_l3": r.hitTokensL3,
                "mismatched_blocks": r.mismatchedBlocks,
                "cpu_blocks": cpuBlocks,
                "disk_blocks": diskBlocks,
                "token_hit_rate": r.tokenHitRate,
                "saved_prefill_s": r.savedPrefillSeconds,
                "saved_prefill_modelled": true,
                "cost_model": "\(model.name) on \(hardware.name)",
                "recompute_s_per_token": cost.secondsPerToken,
                "recompute_s_per_context_pair": cost.secondsPerContextPair,
                "evicted_blocks": r.evictedBlocks,
                "peak_blocks": r.peakBlocks,
                "bad_lines": loaded.skippedLines,
                "capacity_blocks": capacityBlocks,
                "block_tokens": B,
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

    /// The trace named by --trace (format from --format or detected), or the embedded default.
    private func loadTrace() throws -> (String, LoadedTrace) {
        var format: TraceFormat? = nil
        if let name = timed.format {
            guard let f = TraceFormat(rawValue: name.lowercased()) else {
                throw CLIError("unknown --format \(name) (\(TraceFormat.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            format = f
        }
        if let trace {
            do {
                return (trace, try TraceLoader.load(path: trace, format: format, skipBadLines: skipBadLines,
                                                    hashBlockTokens: blockTokens))
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

    private func makeTemporaryFolder() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("kvcache-disk-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    private func printTable(_ runs: [[String: Any]], path: String, skipped: LoadedTrace) {
        print("trace \(path): \(runs[0]["requests"]!) requests, \(runs[0]["input_tokens"]!) input tokens; "
              + "capacity \(capacityBlocks) blocks x \(runs[0]["block_tokens"]!) tokens"
              + (cpuBlocks + diskBlocks > 0 ? ", host \(cpuBlocks) blocks, disk \(diskBlocks) blocks" : "") + "; sequential mode")
        if skipped.skippedLines > 0 { print("skipped \(skipped.skippedLines) bad lines (first: \(skipped.firstSkipped ?? ""))") }
        let header = ["policy", "hit rate", "saved prefill s (modelled)", "hit tokens", "L1", "L2", "L3", "evicted", "peak blocks", "wall s"]
        var rows = [header]
        for r in runs {
            rows.append([r["policy"] as! String, String(format: "%.4f", r["token_hit_rate"] as! Double),
                         String(format: "%.1f", r["saved_prefill_s"] as! Double),
                         "\(r["hit_tokens"]!)", "\(r["hit_tokens_l1"]!)", "\(r["hit_tokens_l2"]!)", "\(r["hit_tokens_l3"]!)",
                         "\(r["evicted_blocks"]!)", "\(r["peak_blocks"]!)",
                         String(format: "%.3f", r["wall_seconds"] as! Double)])
        }
        let widths = header.indices.map { c in rows.map { $0[c].count }.max()! }
        for row in rows {
            print(row.indices.map { row[$0].padding(toLength: widths[$0], withPad: " ", startingAt: 0) }.joined(separator: "  "))
        }
        print("saved prefill: the modelled time (\(runs[0]["cost_model"]!), roofline) to recompute the hit prefixes, the same cost for every policy.")
    }
}
