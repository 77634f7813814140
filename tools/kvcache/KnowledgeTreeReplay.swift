import ArgumentParser
import Foundation
import KVCache
import KVData
import KVSimulation

/// `kvcache replay --format ragpulse --knowledge-tree`: options of the knowledge-tree replay.
struct KnowledgeTreeOptions: ParsableArguments {
    @Flag(help: "RAG traces: replay through RAGCache's knowledge tree (documents under the system prompt, GPU and host tiers) with each --policy (lru, pgdsf) at each --capacity-blocks (GPU) and --tree-host-blocks.")
    var knowledgeTree = false

    @Option(help: "Knowledge tree: blocks of host memory, or a comma-separated list (0: GPU only).")
    var treeHostBlocks: String = "0"

    @Option(help: "Knowledge tree: tokens per block (a node of t tokens takes ceil(t / this) blocks).")
    var treeBlockTokens: Int = 16

    @Option(help: "Knowledge tree: system-first (the trace's prompt order: system prompt, then passages) or passages-first (a what-if layout with the documents at the front).")
    var treeLayout: String = KnowledgeTreeReplay.Layout.systemFirst.rawValue

    func layout() throws -> KnowledgeTreeReplay.Layout {
        guard let l = KnowledgeTreeReplay.Layout(rawValue: treeLayout) else {
            throw CLIError("--tree-layout must be \(KnowledgeTreeReplay.Layout.allCases.map(\.rawValue).joined(separator: " or ")), got '\(treeLayout)'")
        }
        return l
    }

    func hostSizes() throws -> [Int] { try SizeList.parse(treeHostBlocks, option: "--tree-host-blocks", range: 0 ... ReplayLimits.maxBlocks) }
}

/// Runs the knowledge tree over a RAGPulse trace for every (GPU size, host size, policy) and prints one
/// table (or `--json` `{"schema_version": 1, "runs": [...]}`); saved prefill is modelled on the roofline.
enum KnowledgeTreeReplayCommand {
    static func run(trace: String?, sideFiles: String?, tree o: KnowledgeTreeOptions, policies: String, gpuSizes: [Int],
                    fraction: (from: Double, to: Double), warmUp: Bool,
                    model: ModelSpec, hardware: HardwareSpec, skipBadLines: Bool, report: ReportOptions) throws {
        let json = report.machine
        guard let trace else { throw CLIError("--knowledge-tree needs --trace FILE") }
        let kinds = try policies.split(separator: ",").map { name in
            guard let p = KnowledgeTree.Policy(rawValue: String(name)) else {
                throw CLIError("--knowledge-tree runs the policies \(KnowledgeTree.Policy.allCases.map(\.rawValue).joined(separator: ", ")), got '\(name)'")
            }
            return p
        }
        let hostSizes = try o.hostSizes()
        let layout = try o.layout()
        let loaded: RAGPulse.Trace
        do { loaded = try RAGPulse.load(path: trace, sideFiles: sideFiles, skipBadLines: skipBadLines) } catch {
            throw CLIError(error.description)
        }
        let n = loaded.trace.requests.count
        let first = Int((fraction.from * Double(n)).rounded(.down)), end = Int((fraction.to * Double(n)).rounded(.down))
        guard first < end else { throw CLIError("--range holds no request of the \(n) in the trace") }
        let costModel = RooflineCostModel(model: model, hardware: hardware)
        let hostSecondsPerToken = costModel.hostLoadSecondsPerToken
        var rows: [(gpu: Int, host: Int, policy: KnowledgeTree.Policy, result: KnowledgeTreeReplay.Result, wall: Double)] = []
        for gpu in gpuSizes {
            for host in hostSizes {
                for policy in kinds {
                    let config = KnowledgeTree.Config(gpuBlocks: gpu, hostBlocks: host, blockTokens: o.treeBlockTokens, policy: policy,
                                                      cost: costModel.recomputeCost, hostSecondsPerToken: hostSecondsPerToken)
                    let start = KVClock.monotonicNanos()
                    let result: KnowledgeTreeReplay.Result
                    do { result = try KnowledgeTreeReplay.run(loaded, config: config, layout: layout, range: (warmUp ? 0 : first) ..< end, countFrom: first) } catch { throw CLIError(error.description) }
                    rows.append((gpu, host, policy, result, KVClock.seconds(from: start, to: KVClock.monotonicNanos())))
                }
            }
        }
        let label = "\(model.name) on \(hardware.name)"
        if json {
            try report.emit(command: "replay", object: .object([
                ("schema_version", .int(1)), ("mode", .string("knowledge_tree")), ("trace", .string(trace)),
                ("first_request", .int(first)), ("end_request", .int(end)), ("warm_up", .bool(warmUp)), ("layout", .string(layout.rawValue)),
                ("block_tokens", .int(o.treeBlockTokens)), ("cost_model", .string(label)),
                ("host_load_s_per_token", .double(hostSecondsPerToken)), ("bad_lines", .int(loaded.trace.skippedLines)),
                ("runs", .array(rows.map { row in
                    let r = row.result, c = r.counters
                    return .object([
                        ("policy", .string(row.policy.rawValue)), ("capacity_blocks", .int(row.gpu)), ("host_blocks", .int(row.host)),
                        ("requests", .int(r.requests)), ("input_tokens", .int(r.promptTokens)), ("path_tokens", .int(r.pathTokens)),
                        ("hit_tokens", .int(r.hitTokens)), ("hit_tokens_gpu", .int(r.gpuHitTokens)),
                        ("hit_tokens_host", .int(r.hostHitTokens)), ("token_hit_rate", .double(r.hitRate)),
                        ("saved_prefill_s", .double(r.savedSeconds)), ("saved_prefill_modelled", .bool(true)),
                        ("gpu_evictions", .int(c.gpuEvictions)), ("swap_outs", .int(c.swapOuts)),
                        ("swap_out_tokens", .int(c.swapOutTokens)), ("host_evictions", .int(c.hostEvictions)),
                        ("drops", .int(c.drops)), ("wall_s", .double(row.wall)),
                    ])
                })),
            ]))
            return
        }
        let head = rows.first?.result
        print("trace \(trace): requests \(first) ..< \(end)\(warmUp && first > 0 ? " after \(first) uncounted" : ""): \(head?.requests ?? 0) requests, \(head?.promptTokens ?? 0) input tokens, \(head?.pathTokens ?? 0) on the paths (\(layout.rawValue)); \(o.treeBlockTokens)-token blocks")
        print("gpu_blocks  host_blocks  policy  hit_tokens   gpu_hits  host_hits  saved_prefill_s  swap_outs  vs_lru_hits  vs_lru_saved")
        for row in rows {
            let r = row.result
            let lru = rows.first { $0.gpu == row.gpu && $0.host == row.host && $0.policy == .lru }?.result
            let hits = lru.map { $0.hitTokens == 0 ? "-" : String(format: "%.4f", Double(r.hitTokens) / Double($0.hitTokens)) } ?? "-"
            let saved = lru.map { $0.savedSeconds == 0 ? "-" : String(format: "%.4f", r.savedSeconds / $0.savedSeconds) } ?? "-"
            let name = row.policy.rawValue.padding(toLength: 6, withPad: " ", startingAt: 0)
            print(String(format: "%10d  %11d  ", row.gpu, row.host) + name
                  + String(format: "  %10d  %9d  %9d  %15.2f  %9d  ", r.hitTokens, r.gpuHitTokens, r.hostHitTokens, r.savedSeconds, r.counters.swapOuts)
                  + hits.leftPadded(11) + "  " + saved.leftPadded(12))
        }
        print("saved prefill: modelled (\(label), roofline): the hit prefixes' recompute time less their host loads.")
    }
}

private extension String {
    func leftPadded(_ width: Int) -> String { String(repeating: " ", count: max(0, width - count)) + self }
}
