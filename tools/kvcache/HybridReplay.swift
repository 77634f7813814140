import ArgumentParser
import Foundation
import KVCache
import KVData
import KVHybrid

/// Options of `kvcache replay --format marconi`: hybrid attention + SSM prefix caching.
struct HybridReplayOptions: ParsableArguments {
    @Option(help: "--format marconi: cache size in GB (10^9 bytes) for checkpoints and KV, or a comma-separated list (every policy runs at each).")
    var capacityGb: String = "2"

    @Option(help: "--format marconi: write `i,input_len,output_len,hit_tokens,states_after,kv_tokens_after,logical_ts_after,alpha_after` per request (one file per policy: the policy's name is inserted before the extension when several run).")
    var perRequest: String?

    @Option(help: ArgumentHelp("--format marconi, adaptive: fixed settings instead of online tuning, `alpha:beta:threshold:drop[:path]` (e.g. 1:1:2:1:0), or several separated by '/' to tune among.", visibility: .hidden))
    var adaptiveSettings: String?

    @Option(help: ArgumentHelp("--format marconi, adaptive: tuning window in requests.", visibility: .hidden))
    var adaptiveWindow: Int = 25

    @Option(help: ArgumentHelp("--format marconi, adaptive: how much better (relative) a shadow must score to be adopted.", visibility: .hidden))
    var adaptiveMargin: Double = 0.1

    @Option(help: ArgumentHelp("--format marconi, adaptive: weight of the previous windows' scores (0: the last window only).", visibility: .hidden))
    var adaptiveDecay: Double = 0.5

    @Option(help: ArgumentHelp("--format marconi, adaptive: the first decision at this many times the request of the first eviction, when before the first window's end (0: at the window's end).", visibility: .hidden))
    var adaptiveFirstFactor: Int = 5
}

/// `kvcache replay --format marconi --model hybrid-7b --capacity-gb G --policy vllm+,sglang+,marconi-sim,marconi`:
/// replays a Marconi-schema trace through each hybrid policy and reports token hit rate, exact hit tokens
/// and FLOPs saved (total and by layer type), the tuned alpha and evictions.
enum HybridReplayCommand {
    /// The policies run when `--policy` is not given: the parity policy closest to each library one, and
    /// the library's two.
    static let defaultPolicies = "sglang+,marconi,adaptive"

    /// The hybrid policies named in `list`; the core replay's default (`lru`, not a hybrid policy) stands
    /// for `defaultPolicies`.
    static func policies(_ list: String) throws -> [HybridPolicy] {
        let list = list == "lru" ? defaultPolicies : list
        return try list.split(separator: ",").map { name in
            guard let p = HybridPolicy(rawValue: String(name)) else {
                throw ValidationError("unknown hybrid policy '\(name)' (choose from \(HybridPolicy.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            return p
        }
    }

    static func run(trace path: String?, model preset: ModelPreset, policies list: String, skipBadLines: Bool,
                    report: ReportOptions, options: HybridReplayOptions) throws {
        let json = report.machine
        guard let path else { throw CLIError("--format marconi needs --trace FILE") }
        guard let model = preset.hybrid else {
            throw CLIError("--format marconi needs a hybrid --model (\(HybridModel.presets.map(\.name).joined(separator: ", ")))")
        }
        let capacities = try options.capacityGb.split(separator: ",", omittingEmptySubsequences: false).map { item in
            guard let gb = Double(item), gb > 0, gb < 1e9 else {
                throw CLIError("--capacity-gb must be positive (or a comma-separated list of such), got '\(item)'")
            }
            return Int64((gb * 1e9).rounded())
        }
        let policies = try policies(list)
        let trace: MarconiTrace.Trace
        do { trace = try MarconiTrace.read(ByteSource(pathOrStandardInput: path), skipBadLines: skipBadLines) } catch {
            throw CLIError(error.description)
        }
        let requests = trace.requests.map { HybridReplay.Request(input: $0.input, output: $0.output) }
        guard options.adaptiveMargin >= 0, options.adaptiveMargin < 100 else { throw CLIError("--adaptive-margin must be in [0, 100)") }
        guard options.adaptiveDecay >= 0, options.adaptiveDecay <= 1 else { throw CLIError("--adaptive-decay must be in [0, 1]") }
        guard options.adaptiveFirstFactor >= 0, options.adaptiveFirstFactor <= 1_000 else {
            throw CLIError("--adaptive-first-factor must be in 0...1000")
        }
        var adaptive = HybridReplay.Adaptive(window: max(1, options.adaptiveWindow), decay: options.adaptiveDecay,
                                             margin: options.adaptiveMargin, firstFactor: options.adaptiveFirstFactor)
        if let text = options.adaptiveSettings {
            adaptive = HybridReplay.Adaptive(candidates: try candidates(text), start: 0, window: max(1, options.adaptiveWindow),
                                             decay: options.adaptiveDecay, margin: options.adaptiveMargin,
                                             firstFactor: options.adaptiveFirstFactor)
        }
        var objects: [JSONValue] = []
        for capacity in capacities {
            for policy in policies {
                let start = KVClock.monotonicNanos()
                let r = HybridReplay.run(requests, model: model, capacityBytes: capacity, policy: policy,
                                         adaptive: adaptive)
                let wall = KVClock.seconds(from: start, to: KVClock.monotonicNanos())
                if let file = options.perRequest {
                    let name = policies.count == 1 ? nil : policy.rawValue
                    let size = capacities.count == 1 ? nil : "\(Double(capacity) / 1e9)gb"
                    let tag = [name, size].compactMap { $0 }.joined(separator: "-")
                    try writePerRequest(r, requests, to: tag.isEmpty ? file : insert(tag, into: file))
                }
                let alpha: JSONValue = r.alpha.map { .double($0) } ?? .null
                objects.append(.object([
                    ("trace", .string(path)), ("format", .string("marconi")), ("model", .string(model.name)),
                    ("policy", .string(policy.rawValue)), ("capacity_bytes", .int(Int(capacity))),
                    ("requests", .int(requests.count)), ("input_tokens", .int(r.inputTokens)),
                    ("hit_tokens", .int(r.hitTokens)), ("token_hit_rate", .double(r.tokenHitRate)),
                    ("flops_saved", .int(Int(r.saved.total))), ("flops_saved_attention", .int(Int(r.saved.attention))),
                    ("flops_saved_mlp", .int(Int(r.saved.mlp))), ("flops_saved_mamba", .int(Int(r.saved.mamba))),
                    ("alpha", alpha), ("first_eviction_at", r.firstEvictionAt.map { .int($0) } ?? .null),
                    ("tuning_window", r.window.map { .int($0) } ?? .null),
                    ("adaptive_settings", r.settings.map { .string($0.description) } ?? .null),
                    ("adaptive_candidate", r.settings.map { s in
                        .string("\(r.alpha ?? 0):\(s.recurrenceWeight):\(s.branchThreshold):\(s.dropSuperseded ? 1 : 0):\(s.refreshPath ? 1 : 0)")
                    } ?? .null),
                    ("setting_switches", .int(r.settingSwitches)),
                    ("evicted_nodes", .int(r.evictedNodes)), ("eviction_calls", .int(r.evictionCalls)),
                    ("bad_lines", .int(trace.skippedLines)), ("wall_s", .double(wall)),
                ]))
                if !json {
                    note("\(policy.rawValue) at \(Double(capacity) / 1e9) GB: hit \(r.hitTokens)/\(r.inputTokens) tokens (\(String(format: "%.2f", 100 * r.tokenHitRate)) %), FLOPs saved \(r.saved.total), alpha \(r.alpha.map { String($0) } ?? "none"), \(r.evictedNodes) nodes evicted, \(String(format: "%.3f", wall)) s wall")
                }
            }
        }
        if json { try report.emit(command: "replay", fields: [("mode", .string("hybrid"))], runs: objects) }
    }

    private static func candidates(_ text: String) throws -> [HybridAlphaTuner.Candidate] {
        guard !text.split(separator: "/").isEmpty else { throw CLIError("--adaptive-settings: no setting given") }
        return try text.split(separator: "/").map { item in
            let f = item.split(separator: ":").map { Double($0) }
            guard f.count == 4 || f.count == 5, let a = f[0], let b = f[1], let t = f[2], let d = f[3],
                  a >= 0, b >= 0, t >= 1, t < 256, let r = f.count == 5 ? f[4] : 0 else {
                throw CLIError("--adaptive-settings: '\(item)' is not alpha:beta:threshold:drop[:path]")
            }
            return HybridAlphaTuner.Candidate(alpha: a, settings: .init(recurrenceWeight: b, branchThreshold: Int(t),
                                                                      dropSuperseded: d != 0, refreshPath: r != 0))
        }
    }

    private static func insert(_ name: String, into file: String) -> String {
        let safe = name.replacingOccurrences(of: "+", with: "plus")
        let url = URL(fileURLWithPath: file)
        let ext = url.pathExtension
        let base = url.deletingPathExtension().path
        return ext.isEmpty ? "\(base)-\(safe)" : "\(base)-\(safe).\(ext)"
    }

    private static func writePerRequest(_ r: HybridReplay.Result, _ requests: [HybridReplay.Request], to file: String) throws {
        var out = "i,input_len,output_len,hit_tokens,states_after,kv_tokens_after,logical_ts_after,alpha_after\n"
        for (i, s) in r.steps.enumerated() {
            out += "\(i),\(requests[i].input.count),\(requests[i].output.count),\(s.hitTokens),\(s.checkpointsAfter),"
            out += "\(s.cachedTokensAfter),\(s.clockAfter),\(r.policy == .vllmPlus ? "" : String(s.alphaAfter))\n"
        }
        do { try OutputFile.write(Array(out.utf8), to: file) } catch { throw CLIError(error.description) }
    }
}
