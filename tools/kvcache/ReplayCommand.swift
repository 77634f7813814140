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

    @Option(help: "Trace file: Mooncake JSONL, Azure/Vidur/BurstGPT CSV, ShareGPT or CASTILLO (detected, or --format; gzip or not), or - for standard input. Default: the embedded sample.")
    var trace: String?

    @Option(help: "sequential (hit rates) or timed (scheduler on a modelled GPU).")
    var mode: Mode = .sequential

    @Option(help: "Eviction policy, or a comma-separated list to compare side by side (\(ReplayPolicy.allCases.map(\.rawValue).joined(separator: ", "))). pgdsf and pgdsf-probation price blocks by their modelled recompute time on --model and --hardware; marking-noise (the predictor replaced by noise) and belady (the offline optimum over leaves) run in sequential mode on the device pool only; every other policy runs in every mode (sequential with or without tiers, timed).")
    var policy: String = "lru"

    @Option(help: "Blocks the cache holds, or a comma-separated list (sequential mode: every policy runs at each).")
    var capacityBlocks: String = "8192"

    @Option(help: "Sequential mode: replay only the requests from fraction FROM to fraction TO of the trace (FROM:TO, e.g. 0.5:1 for the second half).")
    var range: String = "0:1"

    @Flag(help: "Sequential mode, with --range: first replay the requests before FROM, uncounted, so the cache and the policies (and belady's view of the future) start warm.")
    var warmUp = false

    @Option(help: "pgdsf-probation: what the first use of a key counts in PGDSF's frequency (0...1; plain pgdsf counts 1).")
    var firstUseWeight: Double = ReplayPolicy.Options().firstUseWeight

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

    @OptionGroup(title: "Report")
    var report: ReportOptions
    var json: Bool { report.machine }

    @Option(help: "Sequential and timed modes: write one JSON object per replayed request (per run) to FILE (JSON Lines).")
    var requestsOut: String?

    @Option(help: "Sequential mode, one policy and capacity, device pool only: record every request (a request frame: lengths, block keys, hit tokens) and the cache's KV events it caused (vLLM's KVEventBatch, none when it changed nothing), timed by the request's arrival, to FILE (KVEVREC2, docs/EVENTS.md), for `kvcache trace export`.")
    var recordEvents: String?

    @Option(help: "Sequential mode: write the final Prometheus metrics of every run (labelled by policy and capacity) to FILE.")
    var metrics: String?

    @OptionGroup(title: "Timed mode (--mode timed)")
    var timed: TimedReplayOptions

    @OptionGroup(title: "Hybrid attention + SSM models (--format marconi; policies vllm+, sglang+, marconi-sim, marconi, adaptive; default sglang+,marconi,adaptive)")
    var hybrid: HybridReplayOptions
    @OptionGroup(title: "RAG traces (--format ragpulse)")
    var chunks: ChunkReplayOptions
    @OptionGroup(title: "RAGCache's knowledge tree (--format ragpulse --knowledge-tree)")
    var tree: KnowledgeTreeOptions
    @OptionGroup(title: "Pensieve's per-conversation retention (--pensieve)")
    var pensieve: PensieveOptions

    func validate() throws {
        let timedPensieve = pensieve.pensieve && mode == .timed
        let otherReplay = (pensieve.pensieve && !timedPensieve) || timed.format == .marconi || timed.format == .ragpulse || tree.knowledgeTree
        if otherReplay && requestsOut != nil {
            throw ValidationError("--requests-out is written by the sequential and timed replays of request traces only")
        }
        if otherReplay && recordEvents != nil {
            throw ValidationError("--record-events needs sequential mode, one online policy, one capacity and no lower tier")
        }
        if let requestsOut {
            do { try OutputFile.checkTarget(requestsOut) } catch { throw ValidationError("--requests-out \(error.description)") }
        }
        if timedPensieve {
            try timed.validate()
            _ = try TimedReplay.retentions(policy)
            guard (0...1).contains(pensieve.pensieveSwapThreshold) else { throw ValidationError("--pensieve-swap-threshold must be in 0...1") }
            return
        }
        if pensieve.pensieve { _ = try capacities(); return }  // its own options are checked when it runs
        if timed.format == .marconi { _ = try HybridReplayCommand.policies(policy); return }
        if timed.model.hybrid != nil { throw ValidationError("a hybrid --model needs --format marconi") }
        let blocks = 0...ReplayLimits.maxBlocks
        let capacities = try self.capacities()
        guard (1...ReplayLimits.maxBlockTokens).contains(blockTokens) else { throw ValidationError("--block-tokens must be in 1...\(ReplayLimits.maxBlockTokens)") }
        guard blocks.contains(cpuBlocks) else { throw ValidationError("--cpu-blocks must be in 0...\(ReplayLimits.maxBlocks)") }
        guard blocks.contains(diskBlocks) else { throw ValidationError("--disk-blocks must be in 0...\(ReplayLimits.maxBlocks)") }
        let tiered = cpuBlocks + diskBlocks > 0
        let policies = try self.policies()
        let policyBytes = policies.map(\.stateBytesPerBlock).max() ?? 0  // one run at a time
        do {
            try ReplayLimits.checkMemory(capacities.max()! * ((tiered ? ReplayLimits.tieredBlockBytes : ReplayLimits.deviceBlockBytes) + policyBytes)
                                         + cpuBlocks * ReplayLimits.tieredBlockBytes + diskBlocks * ReplayLimits.diskBlockBytes,
                                         what: "--capacity-blocks, --cpu-blocks and --disk-blocks")
        } catch { throw ValidationError(error.description) }
        try timed.validate()
        if tiered, let p = policies.first(where: { $0.kind == nil }) {
            throw ValidationError("--policy \(p.rawValue) runs on the device pool only (no --cpu-blocks or --disk-blocks)")
        }
        if mode == .timed, let p = policies.first(where: { $0.kind == nil }) {
            throw ValidationError("--policy \(p.rawValue) runs in sequential mode only (not --mode timed)")
        }
        _ = try fraction()
        if let recordEvents {
            guard mode == .sequential, policies.count == 1, capacities.count == 1, !tiered, policies[0] != .belady else {
                throw ValidationError("--record-events needs sequential mode, one online policy, one capacity and no lower tier")
            }
            do { try OutputFile.checkTarget(recordEvents) } catch { throw ValidationError("--record-events \(error.description)") }
        }
        guard (0...1).contains(firstUseWeight) else { throw ValidationError("--first-use-weight must be in 0...1") }
    }

    func policies() throws -> [ReplayPolicy] {
        do { return try ReplayPolicy.list(policy) } catch { throw ValidationError(error.description) }
    }

    func capacities() throws -> [Int] {
        try capacityBlocks.split(separator: ",", omittingEmptySubsequences: false).map { text in
            guard let n = Int(text), (1...ReplayLimits.maxBlocks).contains(n) else {
                throw ValidationError("--capacity-blocks must be in 1...\(ReplayLimits.maxBlocks) (or a comma-separated list of such), got '\(text)'")
            }
            return n
        }
    }

    /// --range as fractions (from, to) with 0 <= from < to <= 1.
    func fraction() throws -> (from: Double, to: Double) {
        let parts = range.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let from = Double(parts[0]), let to = Double(parts[1]),
              0 <= from, from < to, to <= 1 else {
            throw ValidationError("--range must be FROM:TO with 0 <= FROM < TO <= 1, got '\(range)'")
        }
        return (from, to)
    }

    func run() throws {
        if pensieve.pensieve && mode == .timed {
            let (path, loaded) = try loadTrace()
            return try TimedReplay.run(trace: loaded, label: path, report: report, requestsOut: requestsOut, options: timed,
                                       retentions: try TimedReplay.retentions(policy),
                                       retentionSwapThreshold: pensieve.pensieveSwapThreshold)
        }
        if pensieve.pensieve {
            return try PensieveReplayCommand.run(
                trace: trace, format: timed.format, options: pensieve, policies: policy, gpuSizes: try capacities(),
                model: timed.model.spec, hardware: timed.hardware.spec, skipBadLines: skipBadLines, report: report)
        }
        if timed.format == .marconi {
            return try HybridReplayCommand.run(trace: trace, model: timed.model, policies: policy,
                                               skipBadLines: skipBadLines, report: report, options: hybrid)
        }
        if mode == .sequential && tree.knowledgeTree {
            return try KnowledgeTreeReplayCommand.run(
                trace: trace, sideFiles: chunks.sideFiles, tree: tree, policies: policy, gpuSizes: try capacities(),
                fraction: try fraction(), warmUp: warmUp, model: timed.model.spec, hardware: timed.hardware.spec,
                skipBadLines: skipBadLines, report: report)
        }
        if mode == .sequential && ChunkReplay.handles(trace: trace, format: timed.format) {
            return try ChunkReplay.run(trace: trace, options: chunks, skipBadLines: skipBadLines, report: report,
                                       finite: FiniteRun(policies: policy, fraction: try fraction(), warmUp: warmUp,
                                                         model: timed.model.spec, hardware: timed.hardware.spec))
        }
        let (path, loaded) = try loadTrace()
        if mode == .timed {
            try TimedReplay.run(trace: loaded, label: path, report: report, requestsOut: requestsOut, options: timed,
                                evictionPolicies: try policies().compactMap(\.kind),
                                policyParameters: ReplayPolicy.Options(firstUseWeight: firstUseWeight).parameters)
            return
        }
        // One recompute cost for every policy: pgdsf's block prices and every run's saved_prefill_s.
        let model = timed.model.spec, hardware = timed.hardware.spec
        let cost = RooflineCostModel(model: model, hardware: hardware).recomputeCost
        let (from, to) = try fraction()
        let n = loaded.requests.count
        let first = Int((from * Double(n)).rounded(.down)), end = Int((to * Double(n)).rounded(.down))
        guard first < end else { throw CLIError("--range \(range) holds no request of the \(n) in the trace") }
        // Replayed: the range, after the uncounted warm-up when asked.
        let warm = warmUp ? first : 0
        let requests = loaded.requests[(first - warm) ..< end]
        let B = requests.first(where: { $0.hashBlockTokens > 0 })?.hashBlockTokens ?? blockTokens
        var table: NextUseTable?
        var runs: [SequentialRun] = []
        let exposition = metrics.map { ReplayMetrics(path: $0) }
        var perRequest = try requestsOut.map { try RequestsOut(path: $0) }
        let recording = recordEvents.map { EventRecorder(path: $0) }
        let capacities = try capacities(), policies = try policies()
        let progress = ProgressLine(what: "requests", runs: capacities.count * policies.count, itemsPerRun: requests.count)
        defer { progress.finish() }
        let sampleEvery = max(1, requests.count / 100)
        for capacity in capacities {
            for kind in policies {
                progress.begin("replay \(kind.rawValue) at \(capacity) blocks", index: runs.count)
                let start = KVClock.monotonicNanos()
                let diskFolder = diskBlocks > 0 ? try diskDir ?? makeTemporaryFolder() : nil
                defer { if diskDir == nil, let diskFolder { try? FileManager.default.removeItem(atPath: diskFolder) } }
                var replay: SequentialReplay
                if let core = kind.kind, cpuBlocks + diskBlocks > 0 {
                    replay = try SequentialReplay(
                        capacityBlocks: capacity, blockTokens: B, policy: core,
                        parameters: ReplayPolicy.Options(firstUseWeight: firstUseWeight).parameters, recomputeCost: cost,
                        tiers: .init(hostBlocks: cpuBlocks, diskBlocks: diskBlocks, diskDirectory: diskFolder))
                } else {
                    let instance = try kind.make(capacity: capacity, cost: cost, options: .init(firstUseWeight: firstUseWeight)) {
                        if table == nil { table = SequentialReplay.nextUseTable(requests, blockTokens: B) }
                        return table!
                    }
                    replay = try SequentialReplay(capacityBlocks: capacity, blockTokens: B, policy: instance, recomputeCost: cost,
                                                  recordEvents: recording != nil)
                }
                var occupancy: [TierOccupancySample] = []
                for (i, request) in requests.enumerated() {
                    if i == warm && warm > 0 { replay.resetCounts() }
                    let hitsBefore = replay.result.hitTokens
                    try replay.replay(request)
                    let hit = replay.result.hitTokens - hitsBefore
                    recording?.record(request, hitTokens: hit, manager: replay.manager)
                    if i >= warm, perRequest != nil {
                        try perRequest!.append(SequentialRequestRecord(
                            policy: kind.rawValue, capacityBlocks: capacity, index: first + i - warm,
                            inputTokens: request.inputTokens, hitTokens: hit))
                    }
                    if let tiers = replay.tiered?.tiers, (i + 1) % sampleEvery == 0 || i + 1 == requests.count {
                        let s = tiers.statistics
                        occupancy.append(TierOccupancySample(request: i + 1, l1Blocks: replay.manager.stats.cachedBlocks,
                                                             l2Blocks: s.host.occupancy, l3Blocks: s.disk.occupancy))
                    }
                    progress.advance(to: i + 1)
                    if !progress.isShown && requests.count >= 20_000 && (i + 1) % (requests.count / 10) == 0 {
                        note("replay \(kind.rawValue) at \(capacity) blocks: \(i + 1)/\(requests.count) requests")
                    }
                }
                exposition?.record(replay, policy: kind.rawValue, capacity: capacity)
                replay.finish()
                runs.append(SequentialRun(policy: kind, capacity: capacity, result: replay.result, blockTokens: B,
                                          wallSeconds: KVClock.seconds(from: start, to: KVClock.monotonicNanos()),
                                          occupancy: occupancy))
            }
        }
        progress.finish()
        try exposition?.write()
        try perRequest?.write()
        try recording?.write()
        let costModel = "\(model.name) on \(hardware.name)"
        if json {
            let header = SequentialReplayHeader(
                trace: path, range: range, warmUp: warmUp, badLines: loaded.skippedLines, blockTokens: B,
                cpuBlocks: cpuBlocks, diskBlocks: diskBlocks, costModel: costModel,
                recomputeSPerToken: cost.secondsPerToken, recomputeSPerContextPair: cost.secondsPerContextPair)
            let reports = runs.map { run in
                let r = run.result
                return SequentialRunReport(
                    policy: run.policy.rawValue, capacityBlocks: run.capacity, requests: r.requests,
                    inputTokens: r.inputTokens, hitTokens: r.hitTokens, shareOfBelady: ReportNumber(shareOfBelady(run, in: runs)),
                    hitTokensL1: r.hitTokensL1, hitTokensL2: r.hitTokensL2, hitTokensL3: r.hitTokensL3,
                    tokenHitRate: r.tokenHitRate, savedPrefillS: r.savedPrefillSeconds, evictedBlocks: r.evictedBlocks,
                    peakBlocks: r.peakBlocks, mismatchedBlocks: r.mismatchedBlocks, wallS: run.wallSeconds,
                    occupancy: run.occupancy)
            }
            try report.emit(Report(command: "replay", header: header, runs: reports))
        } else {
            printTable(runs, path: path, skipped: loaded, costModel: costModel)
        }
    }

    /// `run`'s hit tokens over those of the `belady` run at the same capacity (nil without one).
    private func shareOfBelady(_ run: SequentialRun, in runs: [SequentialRun]) -> Double? {
        guard let bound = runs.first(where: { $0.policy == .belady && $0.capacity == run.capacity }) else { return nil }
        return bound.result.hitTokens == 0 ? nil : Double(run.result.hitTokens) / Double(bound.result.hitTokens)
    }

    /// One policy's sequential run at one capacity.
    private struct SequentialRun {
        var policy: ReplayPolicy
        var capacity: Int
        var result: SequentialReplay.Result
        var blockTokens: Int
        var wallSeconds: Double
        var occupancy: [TierOccupancySample]
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
        return (EmbeddedTrace.label, try EmbeddedTrace.load(hashBlockTokens: blockTokens, skipBadLines: skipBadLines))
    }

    private func makeTemporaryFolder() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("kvcache-disk-\(UUID().uuidString)").path
        do { try OutputFolder.create(path) } catch { throw CLIError(error.description) }
        return path
    }

    private func printTable(_ runs: [SequentialRun], path: String, skipped: LoadedTrace, costModel: String) {
        let tiered = cpuBlocks + diskBlocks > 0
        print("trace \(path)" + (range == "0:1" ? "" : " (range \(range)\(warmUp ? ", after an uncounted warm-up on the requests before it" : ""))")
              + ": \(runs[0].result.requests) requests, "
              + "\(runs[0].result.inputTokens) input tokens; blocks of \(runs[0].blockTokens) tokens"
              + (tiered ? ", host \(cpuBlocks) blocks, disk \(diskBlocks) blocks" : "") + "; sequential mode")
        if skipped.skippedLines > 0 { print("skipped \(skipped.skippedLines) bad lines (first: \(skipped.firstSkipped ?? ""))") }
        var header = ["policy", "capacity", "hit tokens", "share of belady", "hit rate", "saved prefill s (modelled)"]
        if tiered { header += ["L1", "L2", "L3"] }
        header += ["evicted", "peak blocks", "wall s"]
        var rows = [header]
        for run in runs {
            let r = run.result
            var row = [run.policy.rawValue, "\(run.capacity)", "\(r.hitTokens)",
                       shareOfBelady(run, in: runs).map { String(format: "%.3f", $0) } ?? "-",
                       String(format: "%.4f", r.tokenHitRate), String(format: "%.1f", r.savedPrefillSeconds)]
            if tiered { row += ["\(r.hitTokensL1)", "\(r.hitTokensL2)", "\(r.hitTokensL3)"] }
            row += ["\(r.evictedBlocks)", "\(r.peakBlocks)", String(format: "%.3f", run.wallSeconds)]
            rows.append(row)
        }
        let widths = header.indices.map { c in rows.map { $0[c].count }.max()! }
        for row in rows {
            print(row.indices.map { row[$0].padding(toLength: widths[$0], withPad: " ", startingAt: 0) }.joined(separator: "  "))
        }
        print("saved prefill: the modelled time (\(costModel), roofline) to recompute the hit prefixes, the same cost for every policy.")
        if runs.contains(where: { $0.policy == .belady }) {
            print("belady: the offline optimum over leaves (it reads the trace's future), the bound each share is taken of.")
        }
    }
}
