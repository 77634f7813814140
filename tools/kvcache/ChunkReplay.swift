import ArgumentParser
import Foundation
import KVCache
import KVData
import KVSimulation

/// `kvcache replay --format ragpulse`: options of the RAG-trace replay (prefix reuse against chunk reuse).
struct ChunkReplayOptions: ParsableArguments {
    @Flag(help: "RAG traces: reuse every segment seen in an earlier request at any position (with selective recompute), not only leading runs.")
    var chunkReuse = false

    @Option(help: "RAG traces: fraction of each reused chunk's tokens recomputed (CacheBlend), in 0...1.")
    var recomputeRatio: Double = 0.15

    @Option(help: "RAG traces: folder of the side files N_<kind>.jsonl (default: the trace's folder).")
    var sideFiles: String?

    @Option(help: "RAG traces: a finite cache of this many tokens, or a comma-separated list; N% is N percent of the trace's unique segment tokens. The prefix tree and the chunk store share its blocks; each --policy (lru, pgdsf) runs with prefix reuse only and with chunk reuse, with modelled prefill and TTFT.")
    var capacityTokens: String?

    @Option(help: "RAG traces with --capacity-tokens: tokens per pool block (a segment of t tokens takes ceil(t / this) blocks).")
    var chunkBlockTokens: Int = 16

    @Option(help: "RAG traces with --capacity-tokens: a host tier of this many tokens (N% of the unique segment tokens, as --capacity-tokens) that chunks evicted from the pool spill to; a later reuse found only there is a host hit (chunk reuse runs only). Default: none.")
    var hostCapacityTokens: String?
}

/// The unbounded RAG replay (`ChunkReuseReplay`): prefix hits and chunk hits of a RAGPulse trace, with the
/// same figures as tools/reference/ragpulse_replay.py.
enum ChunkReplay {
    /// Whether `kvcache replay` hands this trace here: `--format ragpulse`, or a RAGPulse trace detected.
    static func handles(trace: String?, format: TraceFormat?) -> Bool {
        if let format { return format == .ragpulse }
        guard let trace, let detected = try? TraceLoader.detect(ByteSource(path: trace)) else { return false }
        return detected == .ragpulse
    }

    static func run(trace: String?, options o: ChunkReplayOptions, skipBadLines: Bool, report: ReportOptions,
                    finite: FiniteRun? = nil) throws {
        let json = report.machine
        guard let trace else { throw CLIError("--format ragpulse needs --trace FILE") }
        guard (0 ... 1).contains(o.recomputeRatio) else { throw CLIError("--recompute-ratio must be in 0...1") }
        if o.capacityTokens != nil { _ = try capacities(o, uniqueTokens: 1) }  // the list's syntax, before loading
        let loaded: RAGPulse.Trace
        do { loaded = try RAGPulse.load(path: trace, sideFiles: o.sideFiles, skipBadLines: skipBadLines) } catch {
            throw CLIError(error.description)
        }
        if o.capacityTokens != nil, let finite {
            return try runFinite(trace, loaded, options: o, finite, report: report)
        }
        let start = KVClock.monotonicNanos()
        let r = ChunkReuseReplay.run(loaded, recomputeRatio: o.recomputeRatio)
        let wall = KVClock.seconds(from: start, to: KVClock.monotonicNanos())
        // Prefix-only reuse ignores chunk hits (and recomputes nothing); --chunk-reuse adds them.
        let reused = r.prefixHitTokens + (o.chunkReuse ? r.chunkHitTokens : 0)
        let saved = o.chunkReuse ? r.savedPrefillTokens : r.prefixHitTokens
        if json {
            try report.emit(command: "replay", fields: [("mode", .string("unbounded"))], runs: [.object([
                ("format", .string("ragpulse")), ("trace", .string(trace)),
                ("chunk_reuse", .bool(o.chunkReuse)), ("recompute_ratio", .double(o.recomputeRatio)),
                ("requests", .int(r.requests)), ("input_tokens", .int(r.inputTokens)),
                ("segment_tokens", .int(r.segmentTokens)), ("template_tokens", .int(r.inputTokens - r.segmentTokens)),
                ("prefix_hit_tokens", .int(r.prefixHitTokens)), ("chunk_hit_tokens", .int(r.chunkHitTokens)),
                ("recomputed_tokens", .int(o.chunkReuse ? r.recomputedTokens : 0)),
                ("prefix_hit_rate", .double(r.prefixHitRate)), ("chunk_reuse_hit_rate", .double(r.chunkReuseHitRate)),
                ("reused_tokens", .int(reused)), ("saved_prefill_tokens", .int(saved)),
                ("saved_prefill_modelled", .bool(true)), ("bad_lines", .int(loaded.trace.skippedLines)),
                ("wall_s", .double(wall)),
            ])])
        } else {
            print("trace \(trace): \(r.requests) requests, \(r.inputTokens) input tokens (\(r.inputTokens - r.segmentTokens) template); unbounded cache")
            print(String(format: "prefix reuse: %d tokens (%.4f of input)", r.prefixHitTokens, r.prefixHitRate))
            print(String(format: "chunk reuse:  %d more tokens, %.4f of input with the prefix hits", r.chunkHitTokens, r.chunkReuseHitRate))
            if o.chunkReuse {
                print(String(format: "recomputed at ratio %.2f: %d tokens; saved prefill (modelled, net): %d tokens",
                             o.recomputeRatio, r.recomputedTokens, saved))
            }
        }
    }
}

/// The replay settings a finite RAG replay takes from `kvcache replay`: policies, range, cost model.
struct FiniteRun {
    var policies: String
    var fraction: (from: Double, to: Double)
    var warmUp: Bool
    var model: ModelSpec
    var hardware: HardwareSpec
}

extension ChunkReplay {
    /// --capacity-tokens as token counts: plain numbers, or N% of `uniqueTokens`.
    static func capacities(_ o: ChunkReplayOptions, uniqueTokens: Int) throws -> [Int] {
        guard (1 ... 1 << 20).contains(o.chunkBlockTokens) else { throw CLIError("--chunk-block-tokens must be in 1...1048576") }
        if let host = o.hostCapacityTokens { _ = try capacities(host, uniqueTokens: uniqueTokens, option: "--host-capacity-tokens") }
        return try capacities(o.capacityTokens ?? "", uniqueTokens: uniqueTokens, option: "--capacity-tokens")
    }

    /// A list of token counts as `option` takes it: plain numbers, or N% of `uniqueTokens`.
    static func capacities(_ list: String, uniqueTokens: Int, option: String) throws -> [Int] {
        try list.split(separator: ",", omittingEmptySubsequences: false).map { item in
            if item.hasSuffix("%"), let p = Double(item.dropLast()), p.isFinite, p > 0, p <= 1000 {
                return max(1, Int((p / 100 * Double(uniqueTokens)).rounded()))
            }
            guard let n = Int(item), (1 ... ReplayLimits.maxBlocks).contains(n) else {
                throw CLIError("\(option) must be in 1...\(ReplayLimits.maxBlocks) or N% with 0 < N <= 1000 (or a comma-separated list), got '\(item)'")
            }
            return n
        }
    }

    /// The finite replay: for each capacity and policy, prefix reuse only and chunk reuse through one pool
    /// (`ChunkPrefixReplay`), one table or one report (`--json`, `--csv`, `--output`).
    static func runFinite(_ trace: String, _ loaded: RAGPulse.Trace, options o: ChunkReplayOptions, _ f: FiniteRun, report: ReportOptions) throws {
        let policies = try f.policies.split(separator: ",").map { name in
            guard let p = ChunkPrefixCache.Policy(rawValue: String(name)) else {
                throw CLIError("--capacity-tokens runs the policies \(ChunkPrefixCache.Policy.allCases.map(\.rawValue).joined(separator: ", ")), got '\(name)'")
            }
            return p
        }
        let unique = ChunkPrefixReplay.uniqueSegmentTokens(loaded)
        let sizes = try capacities(o, uniqueTokens: unique)
        let hostList = try o.hostCapacityTokens.map { try capacities($0, uniqueTokens: unique, option: "--host-capacity-tokens") } ?? [0]
        guard hostList.count == 1 else { throw CLIError("--host-capacity-tokens takes one size, got \(hostList.count)") }
        let hostTokens = hostList[0]
        let n = loaded.trace.requests.count
        let first = Int((f.fraction.from * Double(n)).rounded(.down)), end = Int((f.fraction.to * Double(n)).rounded(.down))
        guard first < end else { throw CLIError("--range holds no request of the \(n) in the trace") }
        let cost = RooflineCostModel(model: f.model, hardware: f.hardware).recomputeCost
        var rows: [(tokens: Int, policy: ChunkPrefixCache.Policy, chunkReuse: Bool, result: ChunkPrefixReplay.Result, wall: Double)] = []
        for tokens in sizes {
            for policy in policies {
                for chunkReuse in [false, true] {
                    let config = ChunkPrefixCache.Config(capacityBlocks: tokens / o.chunkBlockTokens, blockTokens: o.chunkBlockTokens, policy: policy,
                                                         chunkReuse: chunkReuse, recomputeRatio: o.recomputeRatio, cost: cost,
                                                         hostBlocks: hostTokens / o.chunkBlockTokens)
                    let start = KVClock.monotonicNanos()
                    let r: ChunkPrefixReplay.Result
                    do { r = try ChunkPrefixReplay.run(loaded, config: config, range: (f.warmUp ? 0 : first) ..< end, countFrom: first) } catch {
                        throw CLIError(error.description)
                    }
                    rows.append((tokens, policy, chunkReuse, r, KVClock.seconds(from: start, to: KVClock.monotonicNanos())))
                }
            }
        }
        let label = "\(f.model.name) on \(f.hardware.name)"
        if report.machine {
            try report.emit(command: "replay", fields: [
                ("mode", .string("ragpulse_finite")), ("trace", .string(trace)),
                ("first_request", .int(first)), ("end_request", .int(end)), ("warm_up", .bool(f.warmUp)),
                ("unique_segment_tokens", .int(unique)), ("block_tokens", .int(o.chunkBlockTokens)),
                ("recompute_ratio", .double(o.recomputeRatio)), ("cost_model", .string(label)), ("modelled", .bool(true)),
                ("host_capacity_tokens", .int(hostTokens)), ("host_blocks", .int(hostTokens / o.chunkBlockTokens)),
                // The cost model's two marginals, as PGDSF prices a node (tools/reference/ragpulse_finite_replay.py takes them).
                ("cost_seconds_per_token", .double(cost.secondsPerToken)),
                ("cost_seconds_per_context_pair", .double(cost.secondsPerContextPair)),
                ("bad_lines", .int(loaded.trace.skippedLines)),
            ], runs: rows.map { row in
                    let r = row.result
                    return .object([
                        ("policy", .string(row.policy.rawValue)), ("capacity_tokens", .int(row.tokens)),
                        ("capacity_blocks", .int(row.tokens / o.chunkBlockTokens)), ("chunk_reuse", .bool(row.chunkReuse)),
                        ("requests", .int(r.requests)), ("input_tokens", .int(r.inputTokens)),
                        ("prefix_hit_tokens", .int(r.prefixHitTokens)), ("chunk_hit_tokens", .int(r.chunkHitTokens)),
                        ("host_hit_tokens", .int(r.hostHitTokens)),
                        ("recomputed_tokens", .int(r.recomputedTokens)), ("reused_tokens", .int(r.reusedTokens)),
                        ("saved_prefill_tokens", .int(r.savedPrefillTokens)), ("saved_prefill_s", .double(r.savedSeconds)),
                        ("prefill_s", .double(r.prefillSeconds)), ("ttft_mean_s", .double(r.meanTTFT)),
                        ("ttft_p50_s", .double(r.ttftQuantile(0.5))), ("ttft_p99_s", .double(r.ttftQuantile(0.99))),
                        ("evicted_nodes", .int(r.evictedNodes)), ("wall_s", .double(row.wall)),
                    ])
                })
            return
        }
        print("trace \(trace): requests \(first)..<\(end)\(f.warmUp ? " after a warm-up" : ""); \(unique) unique segment tokens; blocks of \(o.chunkBlockTokens) tokens; recompute ratio \(o.recomputeRatio)"
              + (hostTokens > 0 ? "; host tier \(hostTokens) tokens (chunk runs; host hits included in chunk_hit)" : ""))
        print("prefix tree and chunk store share one pool; saved prefill and TTFT modelled on \(label) (one prefill instance, arrival order)")
        print("capacity_tokens  policy  reuse    prefix_hit  chunk_hit  recomputed  saved_tokens  saved_s     ttft_mean_s  ttft_p99_s  evicted")
        for row in rows {
            let r = row.result
            let names = row.policy.rawValue.padding(toLength: 6, withPad: " ", startingAt: 0) + "  "
                + (row.chunkReuse ? "chunk" : "prefix").padding(toLength: 7, withPad: " ", startingAt: 0)
            print(String(format: "%15d  %@  %10d  %9d  %10d  %12d  %10.2f  %11.4f  %10.4f  %7d", row.tokens, names, r.prefixHitTokens, r.chunkHitTokens, r.recomputedTokens,
                         r.savedPrefillTokens, r.savedSeconds, r.meanTTFT, r.ttftQuantile(0.99), r.evictedNodes))
        }
    }
}
