import ArgumentParser
import Foundation
import KVCache
import KVData
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

    @OptionGroup(title: "Hybrid attention + SSM models (--format marconi; policies vllm+, sglang+, marconi-sim, marconi, adaptive; default sglang+,marconi,adaptive)")
    var hybrid: HybridReplayOptions
    @OptionGroup(title: "RAG traces (--format ragpulse)")
    var chunks: ChunkReplayOptions

    func validate() throws {
        if timed.format == .marconi { _ = try HybridReplayCommand.policies(policy); return }
        if timed.model.hybrid != nil { throw ValidationError("a hybrid --model needs --format marconi") }
        let blocks = 0...ReplayLimits.maxBlocks
        guard (1...ReplayLimits.maxBlocks).contains(capacityBlocks) else { throw ValidationError("--capacity-blocks must be in 1...\(ReplayLimits.maxBlocks)") }
        guard (1...ReplayLimits.maxBlockTokens).contains(blockTokens) else { throw ValidationError("--block-tokens must be in 1...\(ReplayLimits.maxBlockTokens)") }
        guard blocks.contains(cpuBlocks) else { throw ValidationError("--cpu-blocks must be in 0...\(ReplayLimits.maxBlocks)") }
        guard blocks.contains(diskBlocks) else { throw ValidationError("--disk-blocks must be in 0...\(ReplayLimits.maxBlocks)") }
        let tiered = cpuBlocks + diskBlocks > 0
        do {
            try ReplayLimits.checkMemory(capacityBlocks * (tiered ? ReplayLimits.tieredBlockBytes : ReplayLimits.deviceBlockBytes)
                                         + cpuBlocks * ReplayLimits.tieredBlockBytes + diskBlocks * ReplayLimits.diskBlockBytes,
                                         what: "--capacity-blocks, --cpu-blocks and --disk-blocks")
        } catch { throw ValidationError(error.description) }
        try timed.validate()
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
        if timed.format == .marconi {
            return try HybridReplayCommand.run(trace: trace, model: timed.model, policies: policy,
                                               skipBadLines: skipBadLines, json: json, options: hybrid)
        }
        if mode == .sequential && ChunkReplay.handles(trace: trace, format: timed.format) {
            return try ChunkReplay.run(trace: trace, options: chunks, skipBadLines: skipBadLines, json: json)
        }
        let (path, loaded) = try loadTrace()
        if mode == .timed {
            try TimedReplay.run(trace: loaded, label: path, json: json, options: timed)
            return
        }
        // One recompute cost for every policy: pgdsf's block prices and every run's saved_prefill_s.
        let model = timed.model.spec, hardware = timed.hardware.spec
        let cost = RooflineCostModel(model: model, hardware: hardware).recomputeCost
        var runs: [SequentialRun] = []
        for kind in try policies() {
            let start = KVClock.monotonicNanos()
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
            runs.append(SequentialRun(policy: kind, result: replay.result, blockTokens: B,
                                      wallSeconds: KVClock.seconds(from: start, to: KVClock.monotonicNanos())))
        }
        let costModel = "\(model.name) on \(hardware.name)"
        if json {
            let objects = runs.map { run -> JSONValue in
                let r = run.result
                return .object([
                    ("mode", .string(mode.rawValue)), ("trace", .string(path)), ("policy", .string(run.policy.rawValue)),
                    ("requests", .int(r.requests)), ("input_tokens", .int(r.inputTokens)), ("hit_tokens", .int(r.hitTokens)),
                    ("hit_tokens_l1", .int(r.hitTokensL1)), ("hit_tokens_l2", .int(r.hitTokensL2)),
                    ("hit_tokens_l3", .int(r.hitTokensL3)), ("token_hit_rate", .double(r.tokenHitRate)),
                    ("saved_prefill_s", .double(r.savedPrefillSeconds)), ("saved_prefill_modelled", .bool(true)),
                    ("cost_model", .string(costModel)), ("recompute_s_per_token", .double(cost.secondsPerToken)),
                    ("recompute_s_per_context_pair", .double(cost.secondsPerContextPair)),
                    ("evicted_blocks", .int(r.evictedBlocks)), ("peak_blocks", .int(r.peakBlocks)),
                    ("mismatched_blocks", .int(r.mismatchedBlocks)), ("bad_lines", .int(loaded.skippedLines)),
                    ("capacity_blocks", .int(capacityBlocks)), ("block_tokens", .int(run.blockTokens)),
                    ("cpu_blocks", .int(cpuBlocks)), ("disk_blocks", .int(diskBlocks)), ("wall_s", .double(run.wallSeconds)),
                ])
            }
            JSONReport.print(objects.count == 1 ? objects[0] : .object([("runs", .array(objects))]))
        } else {
            printTable(runs, path: path, skipped: loaded, costModel: costModel)
        }
    }

    /// One policy's sequential run.
    private struct SequentialRun {
        var policy: EvictionPolicyKind
        var result: SequentialReplay.Result
        var blockTokens: Int
        var wallSeconds: Double
    }

    /// The trace named by --trace (format from --format or detected), or the embedded default.
    private func loadTrace() throws -> (String, LoadedTrace) {
        let format = timed.format
        if let trace {
            do {
                return (trace, try TraceLoader.load(path: trace, format: format, skipBadLines: skipBadLines,
                                                    hashBlockTokens: blockTokens))
            } catch { throw CLIError(error.description) }
        }
        guard let url = Bundle.module.url(forResource: "mooncake-synthetic-1000", withExtension: "jsonl") else {
            throw CLIError("the embedded default trace is missing from the resource bundle")
        }
        do {
            return ("embedded:mooncake-synthetic-1000.jsonl",
                    try Mooncake.read(ByteSource(path: url.path), blockTokens: blockTokens, skipBadLines: skipBadLines))
        } catch { throw CLIError(error.description) }
    }

    private func makeTemporaryFolder() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("kvcache-disk-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    private func printTable(_ runs: [SequentialRun], path: String, skipped: LoadedTrace, costModel: String) {
        print("trace \(path): \(runs[0].result.requests) requests, \(runs[0].result.inputTokens) input tokens; "
              + "capacity \(capacityBlocks) blocks x \(runs[0].blockTokens) tokens"
              + (cpuBlocks + diskBlocks > 0 ? ", host \(cpuBlocks) blocks, disk \(diskBlocks) blocks" : "") + "; sequential mode")
        if skipped.skippedLines > 0 { print("skipped \(skipped.skippedLines) bad lines (first: \(skipped.firstSkipped ?? ""))") }
        let header = ["policy", "hit rate", "saved prefill s (modelled)", "hit tokens", "L1", "L2", "L3", "evicted", "peak blocks", "wall s"]
        var rows = [header]
        for run in runs {
            let r = run.result
            rows.append([run.policy.rawValue, String(format: "%.4f", r.tokenHitRate), String(format: "%.1f", r.savedPrefillSeconds),
                         "\(r.hitTokens)", "\(r.hitTokensL1)", "\(r.hitTokensL2)", "\(r.hitTokensL3)",
                         "\(r.evictedBlocks)", "\(r.peakBlocks)", String(format: "%.3f", run.wallSeconds)])
        }
        let widths = header.indices.map { c in rows.map { $0[c].count }.max()! }
        for row in rows {
            print(row.indices.map { row[$0].padding(toLength: widths[$0], withPad: " ", startingAt: 0) }.joined(separator: "  "))
        }
        print("saved prefill: the modelled time (\(costModel), roofline) to recompute the hit prefixes, the same cost for every policy.")
    }
}
