import ArgumentParser
import Foundation
import KVCache
import KVData
import KVSimulation

/// `kvcache replay --pensieve`: options of the per-conversation retention replay.
struct PensieveOptions: ParsableArguments {
    @Flag(help: "Multi-turn traces (ShareGPT, Marconi chat, any with sessions; Mooncake conversations from the hash chains): replay Pensieve's per-conversation retention with each --policy (lru, pensieve, prefix-lru) at each --capacity-blocks (GPU chunks) and --pensieve-host-chunks, each turn served at its arrival. With --mode timed: the timed engine, each --policy of lru (the device pool's prefix cache under LRU with its host tier), pensieve and conversation-lru (the retention by cost over idle time, or by idle time) at each --kv-gib and --cpu-gib (host memory), reporting the history's recomputed tokens and host hit rate beside the modelled latencies.")
    var pensieve = false

    @Option(help: "Pensieve: host-memory chunks, or a comma-separated list (0: GPU only).")
    var pensieveHostChunks: String = "0"

    @Option(help: "Pensieve: tokens per chunk.")
    var pensieveChunkTokens: Int = 32

    @Option(help: "Pensieve (both modes): free GPU share below which chunks are swapped to the host ahead of time (0...1).")
    var pensieveSwapThreshold: Double = 0.25

    @Option(name: .customLong("pensieve-think-s"), help: "Pensieve, traces without times: seconds between a conversation's turns.")
    var thinkSeconds: Double = 60

    @Option(name: .customLong("pensieve-conversation-gap-s"), help: "Pensieve, traces without times: seconds between conversation starts.")
    var conversationGapSeconds: Double = 10

    func hostSizes() throws -> [Int] { try SizeList.parse(pensieveHostChunks, option: "--pensieve-host-chunks", range: 0 ... ReplayLimits.maxBlocks) }
}

/// Runs `PensieveReplay` for every (GPU size, host size, policy) and prints one table (or `--json`
/// `{"schema_version": 1, "runs": [...]}`); prefill seconds are modelled on the roofline.
enum PensieveReplayCommand {
    static func run(trace: String?, format: TraceFormat?, options o: PensieveOptions, policies: String, gpuSizes: [Int],
                    model: ModelSpec, hardware: HardwareSpec, skipBadLines: Bool, report: ReportOptions) throws {
        let json = report.machine
        guard let trace else { throw CLIError("--pensieve needs --trace FILE (a multi-turn trace)") }
        let kinds = try policies.split(separator: ",").map { name in
            guard let p = PensieveRetention.Policy(rawValue: String(name)) else {
                throw CLIError("--pensieve runs the policies \(PensieveRetention.Policy.allCases.map(\.rawValue).joined(separator: ", ")), got '\(name)'")
            }
            return p
        }
        let hostSizes = try o.hostSizes()
        guard o.thinkSeconds.isFinite, o.thinkSeconds >= 0, o.conversationGapSeconds.isFinite, o.conversationGapSeconds >= 0 else {
            throw CLIError("--pensieve-think-s and --pensieve-conversation-gap-s must be finite and >= 0")
        }
        let loaded: LoadedTrace
        do { loaded = try TraceLoader.load(path: trace, format: format, skipBadLines: skipBadLines) } catch {
            throw CLIError(error.description)
        }
        let costModel = RooflineCostModel(model: model, hardware: hardware)
        let hostSecondsPerToken = costModel.hostLoadSecondsPerToken
        let schedule = PensieveReplay.Schedule(conversationGapSeconds: o.conversationGapSeconds, thinkSeconds: o.thinkSeconds)
        var rows: [(gpu: Int, host: Int, policy: PensieveRetention.Policy, result: PensieveReplay.Result, wall: Double)] = []
        for gpu in gpuSizes {
            for host in hostSizes {
                for policy in kinds {
                    let config = PensieveRetention.Config(gpuChunks: gpu, hostChunks: host, chunkTokens: o.pensieveChunkTokens,
                                                          policy: policy, cost: costModel.recomputeCost,
                                                          hostSecondsPerToken: hostSecondsPerToken, swapThreshold: o.pensieveSwapThreshold)
                    let start = KVClock.monotonicNanos()
                    let result: PensieveReplay.Result
                    do {
                        result = try PensieveReplay.run(loaded.requests, hasTimestamps: loaded.hasTimestamps, schedule: schedule, config: config)
                    } catch { throw CLIError(error.description) }
                    rows.append((gpu, host, policy, result, KVClock.seconds(from: start, to: KVClock.monotonicNanos())))
                }
            }
        }
        let label = "\(model.name) on \(hardware.name)"
        if json {
            try report.emit(command: "replay", object: .object([
                ("schema_version", .int(1)), ("mode", .string("pensieve")), ("trace", .string(trace)),
                ("chunk_tokens", .int(o.pensieveChunkTokens)), ("swap_threshold", .double(o.pensieveSwapThreshold)),
                ("trace_times", .bool(loaded.hasTimestamps)), ("think_s", .double(o.thinkSeconds)),
                ("conversation_gap_s", .double(o.conversationGapSeconds)), ("cost_model", .string(label)),
                ("bad_lines", .int(loaded.skippedLines)),
                ("runs", .array(rows.map { row in
                    let r = row.result, c = r.counters
                    return .object([
                        ("policy", .string(row.policy.rawValue)), ("capacity_blocks", .int(row.gpu)), ("host_chunks", .int(row.host)),
                        ("turns", .int(r.turns)), ("conversations", .int(r.conversations)), ("input_tokens", .int(r.promptTokens)),
                        ("history_tokens", .int(r.totals.historyTokens)), ("hit_tokens_gpu", .int(r.totals.gpuHitTokens)),
                        ("hit_tokens_host", .int(r.totals.hostHitTokens)), ("recomputed_tokens", .int(r.totals.recomputedTokens)),
                        ("new_tokens", .int(r.totals.newTokens)), ("host_hit_rate", .double(r.hostHitRate)),
                        ("history_hit_rate", .double(r.historyHitRate)), ("prefill_s", .double(r.totals.prefillSeconds)),
                        ("prefill_modelled", .bool(true)), ("swapped_chunks", .int(c.swappedChunks)),
                        ("ahead_of_time_chunks", .int(c.aheadOfTimeChunks)), ("dropped_chunks", .int(c.droppedChunks)),
                        ("wall_s", .double(row.wall)),
                    ])
                })),
            ]))
            return
        }
        let head = rows.first?.result
        print("trace \(trace): \(head?.turns ?? 0) turns in \(head?.conversations ?? 0) conversations, \(head?.promptTokens ?? 0) input tokens, "
              + "\(head?.totals.historyTokens ?? 0) of them history; \(o.pensieveChunkTokens)-token chunks; "
              + (loaded.hasTimestamps ? "the trace's times" : "turns \(o.thinkSeconds) s apart, conversations \(o.conversationGapSeconds) s apart"))
        print("gpu_chunks  host_chunks  policy    recomputed   gpu_hits  host_hits  host_hit_rate  prefill_s  vs_lru_recomputed")
        for row in rows {
            let r = row.result
            let lru = rows.first { $0.gpu == row.gpu && $0.host == row.host && $0.policy == .lru }?.result
            let ratio = lru.map { $0.totals.recomputedTokens == 0 ? "-" : String(format: "%.4f", Double(r.totals.recomputedTokens) / Double($0.totals.recomputedTokens)) } ?? "-"
            let name = row.policy.rawValue.padding(toLength: 8, withPad: " ", startingAt: 0)
            print(String(format: "%10d  %11d  ", row.gpu, row.host) + name
                  + String(format: "  %10d  %9d  %9d  %13.4f  %9.2f  ", r.totals.recomputedTokens, r.totals.gpuHitTokens, r.totals.hostHitTokens,
                           r.hostHitRate, r.totals.prefillSeconds)
                  + String(repeating: " ", count: max(0, 17 - ratio.count)) + ratio)
        }
        print("prefill_s: modelled (\(label), roofline): recomputed and new tokens plus host loads; host_hit_rate: host hits over history tokens.")
    }
}
