import ArgumentParser
import Foundation
import KVCache
import KVData
import KVPrediction
import KVScheduler
import KVSimulation

/// Options of `kvcache replay --mode timed`: the modelled engine, the KV budget and the policies.
struct TimedReplayOptions: ParsableArguments {
    @Option(help: "Model preset (the cost model's table), both modes: also prices sequential mode's saved_prefill_s and the pgdsf policy's recompute cost.")
    var model = ModelPreset(argument: "llama3-8b")!
    @Option(help: "Hardware preset (the cost model's table), both modes, as --model.")
    var hardware = HardwarePreset(argument: "h100")!
    @Option(name: .customLong("kv-gib"), help: "KV-cache budget in GiB, or a comma-separated list (every policy runs at each; default: 90% of GPU memory less the weights).")
    var kvGiBList: String?
    @Option(help: "max_tokens of every request; longer true outputs are clipped.")
    var maxTokens = 4096
    @Option(help: "Reservation policy: worst-case, on-demand, predicted, oracle.")
    var reservation = "predicted"
    @Option(help: "Comma-separated policies to run on the same arrivals (overrides --reservation).")
    var compare: String?
    @Option(help: "Divide trace arrival times by this factor (compress time).")
    var rateScale = 1.0
    @Option(help: "Poisson arrivals at this rate (requests/s) instead of the trace's times.")
    var arrivalRate: Double?
    @Option(help: "Queue order: fcfs, spf (shortest predicted first with aging) or cache-aware (RAGCache: largest cached share of the prompt first, with the aging bound as starvation window).")
    var order: OrderArgument = .fcfs
    @Option(name: .customLong("aging-s"), help: "Aging bound for spf and cache-aware, in modelled seconds: a request that waited this long goes ahead in arrival order.")
    var agingSeconds = 30.0
    @Option(help: "Most running sequences (max_num_seqs).")
    var maxRunning = 256
    @Option(help: "Most tokens per step (max_num_batched_tokens, chunked prefill budget).")
    var maxBatchedTokens = 8192
    @Option(help: "Stall-free batching: a step with decodes carries at most this many tokens (decodes first, then prefill chunks, at least one block of prefill); auto: the GPU's balance point on the cost model, growing with the KV the decodes read; off: prefill may take all of --max-batched-tokens.")
    var mixedStepTokens: MixedStepTokens = .auto
    @Option(help: "Tokens per KV-cache block in timed mode.")
    var kvBlockTokens = 16
    @Option(help: "Trace format, both modes (default: detected).")
    var format: TraceFormat?
    @Option(name: .customLong("swap-gib"), help: "Host memory for swapping preempted KV, GiB (0: recompute only).")
    var swapGiB = 0.0
    @Option(name: .customLong("cpu-gib"), help: "Host memory for a prefix tier under the GPU KV cache, GiB (0: off), or a comma-separated list (every policy runs at each). Evicted prompt blocks are kept there (keys only: modelled, no bytes move) and loaded over the host link instead of recomputed when that is faster on the cost model; each policy also runs without it for comparison.")
    var cpuGiBList = "0"
    @Option(help: "Output-length predictor for predicted and spf: history (per template, prompt length and recent outputs) or text (needs --predictor-model).")
    var predictor: PredictorKind = .history
    @Option(help: "A text length model (`kvcache predict train --out`); implies --predictor text.")
    var predictorModel: String?
    @Option(help: "Quantile of the predicted output distribution to reserve.")
    var reserveQuantile = 0.9
    @Option(help: "Replay only the first N requests.")
    var limit: Int?
    @Option(help: "Seed for Poisson arrivals.")
    var seed: UInt64 = 1
    @Option(name: .customLong("think-time-s"), help: "Seconds between a conversation turn's end and the next turn's arrival.")
    var thinkTimeSeconds = 0.0
    @Flag(help: "Let conversation turns arrive at their own times, not after the previous turn finished.")
    var noSessionGating = false

    /// Refuses every numeric flag outside its documented range (README, "Limits"), naming the flag.
    func validate() throws {
        func check(_ ok: Bool, _ message: String) throws { if !ok { throw ValidationError(message) } }
        let tokens = 1...DataLimits.maxTokensPerRequest, seconds = 0...ReplayLimits.maxSeconds
        for kvGiB in try kvGiBs() {
            if let kvGiB { try check(kvGiB.isFinite && kvGiB > 0 && kvGiB <= 1_048_576, "--kv-gib must be a finite number in (0, 1048576]") }
        }
        try check(swapGiB.isFinite && (0...1_048_576.0).contains(swapGiB), "--swap-gib must be a finite number in 0...1048576")
        for cpuGiB in try cpuGiBs() {
            try check(cpuGiB.isFinite && (0...1_048_576.0).contains(cpuGiB), "--cpu-gib must be a finite number in 0...1048576")
        }
        try check(tokens.contains(maxTokens), "--max-tokens must be in 1...\(DataLimits.maxTokensPerRequest)")
        try check((1...ReplayLimits.maxRunningSequences).contains(maxRunning), "--max-running must be in 1...\(ReplayLimits.maxRunningSequences)")
        try check(tokens.contains(maxBatchedTokens), "--max-batched-tokens must be in 1...\(DataLimits.maxTokensPerRequest)")
        if case let .tokens(n) = mixedStepTokens { try check(tokens.contains(n), "--mixed-step-tokens must be auto, off or in 1...\(DataLimits.maxTokensPerRequest)") }
        try check((1...ReplayLimits.maxBlockTokens).contains(kvBlockTokens), "--kv-block-tokens must be in 1...\(ReplayLimits.maxBlockTokens)")
        try check(rateScale.isFinite && (1e-3...1e6).contains(rateScale), "--rate-scale must be a finite number in 0.001...1000000")
        if let arrivalRate { try check(arrivalRate.isFinite && (1e-3...1e9).contains(arrivalRate), "--arrival-rate must be a finite number in 0.001...1000000000") }
        try check(agingSeconds.isFinite && seconds.contains(agingSeconds), "--aging-s must be a finite number in 0...\(ReplayLimits.maxSeconds)")
        try check(thinkTimeSeconds.isFinite && seconds.contains(thinkTimeSeconds), "--think-time-s must be a finite number in 0...\(ReplayLimits.maxSeconds)")
        try check(reserveQuantile > 0 && reserveQuantile < 1, "--reserve-quantile must be in (0, 1)")
        if let limit { try check(limit >= 0, "--limit must not be negative") }
    }

    /// --kv-gib as a list; one nil (the GPU's free memory) without the option.
    func kvGiBs() throws -> [Double?] {
        guard let kvGiBList else { return [nil] }
        return try Self.numbers(kvGiBList, option: "--kv-gib")
    }

    /// --cpu-gib as a list.
    func cpuGiBs() throws -> [Double] { try Self.numbers(cpuGiBList, option: "--cpu-gib") }

    private static func numbers(_ text: String, option: String) throws -> [Double] {
        try text.split(separator: ",", omittingEmptySubsequences: false).map { item in
            guard let x = Double(item.trimmingCharacters(in: .whitespaces)), x.isFinite else {
                throw ValidationError("\(option) must be a finite number or a comma-separated list of such, got '\(item)'")
            }
            return x
        }
    }
}

/// `--order`.
enum OrderArgument: String, ExpressibleByArgument {
    case fcfs, spf
    case shortestPredictedFirst = "shortest-predicted-first"
    case cacheAware = "cache-aware"
}

/// `--predictor`.
enum PredictorKind: String, ExpressibleByArgument {
    case history, text
}

/// `--mixed-step-tokens auto|off|N`.
enum MixedStepTokens: ExpressibleByArgument {
    case auto, off, tokens(Int)
    init?(argument: String) {
        switch argument.lowercased() {
        case "auto": self = .auto
        case "off": self = .off
        default:
            guard let n = Int(argument), n >= 1 else { return nil }
            self = .tokens(n)
        }
    }
    var defaultValueDescription: String { "auto" }
}

/// `kvcache replay --mode timed`: runs each named reservation policy through the modelled engine on
/// the same arrivals and prints a side-by-side table (stderr) or one JSON object (stdout).
enum TimedReplay {
    /// Runs the timed replay on an already loaded trace (`label` names it in the output): every
    /// reservation policy with every eviction policy of `evictionPolicies` (the device pool's) at every
    /// --kv-gib and --cpu-gib, on the same arrivals.
    /// With `retentions` (`--pensieve`), every run also reports its conversations' history figures, and
    /// each retention runs in turn (nil: the device pool's prefix cache, under the first eviction policy).
    static func run(trace: LoadedTrace, label tracePath: String, report output: ReportOptions, requestsOut: String?,
                    options o: TimedReplayOptions, evictionPolicies: [EvictionPolicyKind] = [.lru],
                    policyParameters: EvictionPolicyKind.Parameters = .init(),
                    retentions: [PensieveRetention.Policy?]? = nil, retentionSwapThreshold: Double = 0.25) throws {
        let json = output.machine
        let wallStart = KVClock.monotonicNanos()
        let model = o.model.spec, hardware = o.hardware.spec
        let names = (o.compare ?? o.reservation).split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        var policies: [ReservationPolicy] = []
        for n in names {
            guard let p = ReservationPolicy(rawValue: n) else {
                throw CLIError("unknown reservation policy \(n) (worst-case, on-demand, predicted, oracle)")
            }
            policies.append(p)
        }
        guard !policies.isEmpty else { throw CLIError("no reservation policy given") }
        guard o.maxTokens >= 1, o.maxRunning >= 1, o.maxBatchedTokens >= 1, o.kvBlockTokens >= 1 else {
            throw CLIError("--max-tokens, --max-running, --max-batched-tokens and --kv-block-tokens must be positive")
        }
        guard o.rateScale > 0, o.rateScale.isFinite else { throw CLIError("--rate-scale must be positive") }
        if let r = o.arrivalRate, !(r > 0 && r.isFinite) { throw CLIError("--arrival-rate must be positive") }
        let queueOrder: QueueOrder = switch o.order {
        case .fcfs: .fcfs
        case .spf, .shortestPredictedFirst: .shortestPredictedFirst(agingSeconds: o.agingSeconds)
        case .cacheAware: .cacheAware(starvationSeconds: o.agingSeconds)
        }

        var requests = trace.requests
        if let limit = o.limit { requests = Array(requests.prefix(max(0, limit))) }
        requests = ArrivalSchedule.apply(to: requests, hasTimestamps: trace.hasTimestamps, rateScale: o.rateScale,
                                         poissonRate: o.arrivalRate, seed: o.seed)

        let costModel = RooflineCostModel(model: model, hardware: hardware)
        guard o.swapGiB >= 0 else { throw CLIError("--swap-gib must not be negative") }
        guard o.thinkTimeSeconds >= 0 else { throw CLIError("--think-time-s must not be negative") }
        /// The engine's configuration at one KV budget and host tier size.
        func configuration(kvGiB: Double?, cpuGiB: Double) throws -> ModelledRunConfig {
            let kvBytes = kvGiB.map { $0 * 1_073_741_824 } ?? costModel.kvBytesAvailable()
            guard kvGiB != nil || kvBytes > 0 else { throw CLIError("\(model.name) does not fit on \(hardware.name): no memory left for the KV cache (give --kv-gib)") }
            guard cpuGiB >= 0, cpuGiB.isFinite else { throw CLIError("--cpu-gib must not be negative") }
            var base = ModelledRunConfig(model: model, hardware: hardware, kvBytes: kvBytes)
            base.blockTokens = o.kvBlockTokens
            base.maxTokens = o.maxTokens
            base.policyParameters = policyParameters
            base.swapBytes = o.swapGiB * 1_073_741_824
            base.hostTierBytes = cpuGiB * 1_073_741_824
            base.scheduler.maxRunningSequences = o.maxRunning
            base.scheduler.maxBatchedTokens = o.maxBatchedTokens
            switch o.mixedStepTokens {
            case .auto: base.scheduler.stallFree = costModel.stallFreeBudget(multiple: o.kvBlockTokens)
            case .off: base.scheduler.stallFree = nil
            case let .tokens(n): base.scheduler.stallFree = StallFreeBudget(baseTokens: n)
            }
            base.scheduler.defaultMaxTokens = o.maxTokens
            base.scheduler.order = queueOrder
            base.sessionThinkSeconds = o.noSessionGating ? nil : o.thinkTimeSeconds
            do { try base.validateLimits() } catch { throw CLIError("--kv-gib, --swap-gib or --cpu-gib: \(error.description)") }
            guard base.capacityBlocks >= 1 else { throw CLIError("--kv-gib holds no KV block") }
            return base
        }
        var configurations: [ModelledRunConfig] = []
        for kv in try o.kvGiBs() {
            for cpu in try o.cpuGiBs() { configurations.append(try configuration(kvGiB: kv, cpuGiB: cpu)) }
        }

        // A fresh predictor per run (they learn online), from one loaded model.
        var textModel: TextLengthModel? = nil
        if let path = o.predictorModel {
            do { textModel = try TextLengthModelFile.load(from: path) } catch { throw CLIError(error.description) }
        } else if o.predictor == .text {
            throw CLIError("--predictor text needs --predictor-model FILE")
        }
        guard o.reserveQuantile > 0, o.reserveQuantile < 1 else { throw CLIError("--reserve-quantile must be in (0, 1)") }
        func makePredictor() -> any OutputLengthPredictor {
            if let textModel {
                let p = TextLengthPredictor(model: textModel)
                p.reserveQuantile = o.reserveQuantile
                return p
            }
            return HistoryLengthPredictor(config: HistoryPredictorConfig(reserveQuantile: o.reserveQuantile))
        }

        var perRequest = try requestsOut.map { try RequestsOut(path: $0) }
        var runs: [TimedRun] = []
        let evictions: [EvictionPolicyKind] = evictionPolicies.isEmpty ? [.lru] : evictionPolicies
        let conversational = retentions != nil
        let variants = (retentions ?? [nil]).flatMap { r in evictions.flatMap { e in policies.map { (r, e, $0) } } }
        let progress = ProgressLine(what: "runs", runs: configurations.count * variants.count, itemsPerRun: 0)
        defer { progress.finish() }
        for base in configurations {
            for (retention, eviction, policy) in variants {
                progress.begin("timed replay \(policy.rawValue), \(retention.map { TimedReplay.name($0) } ?? eviction.rawValue) at \(TimedRun.gib(base.kvBytes)) GiB KV",
                               index: runs.count)
                var config = base
                config.scheduler.reservation = policy
                config.evictionPolicy = eviction
                config.retention = retention
                config.retentionSwapThreshold = retentionSwapThreshold
                config.reportsConversations = conversational
                config.chargesHostWrites = conversational
                let t0 = KVClock.monotonicNanos()
                var report: ModelledRunReport
                do { report = try ModelledEngine(config: config).run(requests, predictor: makePredictor()) } catch {
                    throw CLIError(error.description)
                }
                if config.hostTierBytes > 0 && !conversational {
                    // The same policy without the host tier, on the same arrivals: the TTFT effect.
                    config.hostTierBytes = 0
                    let plain: ModelledRunReport
                    do { plain = try ModelledEngine(config: config).run(requests, predictor: makePredictor()) } catch {
                        throw CLIError(error.description)
                    }
                    report.withoutTiers = (plain.ttftP50, plain.ttftP99, plain.prefillTokens)
                }
                var used = base
                used.retention = retention
                let run = TimedRun(report: report, config: used, wall: KVClock.seconds(from: t0, to: KVClock.monotonicNanos()))
                runs.append(run)
                if perRequest != nil {
                    for l in report.latencies { try perRequest!.append(run.record(l)) }
                }
                if !json && !progress.isShown { note("\(policy.rawValue), \(eviction.rawValue): done in \(String(format: "%.2f", run.wall)) s wall") }
            }
        }
        progress.finish()
        try perRequest?.write()
        let wall = KVClock.seconds(from: wallStart, to: KVClock.monotonicNanos())
        if json {
            let fields: [(String, JSONValue)] = [
                ("mode", .string("timed")), ("times", .string("modelled")), ("trace", .string(tracePath)),
                ("format", .string(trace.format.rawValue)), ("trace_requests", .int(requests.count)),
                ("skipped_lines", .int(trace.skippedLines)),
                ("model", .string(model.name)), ("hardware", .string(hardware.name)),
                ("kv_block_tokens", .int(o.kvBlockTokens)), ("kv_bytes_per_token", .int(model.kvBytesPerToken)),
                ("max_tokens", .int(o.maxTokens)),
                ("max_batched_tokens", .int(o.maxBatchedTokens)),
                ("stall_free_base_tokens", configurations[0].scheduler.stallFree.map { .int($0.baseTokens) } ?? .null),
                ("stall_free_tokens_per_context_token", configurations[0].scheduler.stallFree.map { .double($0.tokensPerContextToken) } ?? .null),
                ("predictor", .string(textModel != nil ? "text" : "history")),
                ("reserve_quantile", .double(o.reserveQuantile)),
                ("rate_scale", .double(o.rateScale)),
                ("arrival_rate", o.arrivalRate.map { .double($0) } ?? .null),
                ("wall_s", .double(wall)),
            ]
            try output.emit(command: "replay", fields: fields, runs: runs.map(\.json))
        } else {
            var out = "Timed replay of \(tracePath) (\(trace.format.rawValue), \(requests.count) requests"
            if trace.skippedLines > 0 { out += ", \(trace.skippedLines) bad lines skipped" }
            out += ")\n"
            for base in configurations {
                out += "\(model.name) on \(hardware.name), KV \(String(format: "%.2f", base.kvBytes / 1_073_741_824)) GiB = \(base.capacityBlocks) blocks of \(base.blockTokens), max_tokens \(o.maxTokens)"
                if base.hostTierBytes > 0 { out += ", host prefix tier \(TimedRun.gib(base.hostTierBytes)) GiB" }
                out += "\n"
            }
            out += "Step token budget \(o.maxBatchedTokens)"
            if let b = configurations[0].scheduler.stallFree {
                out += "; with decodes \(b.baseTokens) + \(String(format: "%.5f", b.tokensPerContextToken)) per context token read (stall-free)"
            }
            out += "\n"
            if configurations.contains(where: { $0.hostTierBytes > 0 }) {
                out += conversational
                    ? "Host memory (--cpu-gib): the prefix cache's host tier, or the retention's host chunks; keys only; loads and copies down (write-backs, moves) charged to their step at the host link's bandwidth\n"
                    : "Host prefix tier: keys only; loads charged at the host link's bandwidth\n"
            }
            if conversational {
                out += "History: the full blocks a turn's keys share with its conversation's previous turn; recomputed: history neither the GPU nor host memory supplied\n"
            }
            out += "All times are modelled (roofline cost model), not measured.\n\n"
            out += TimedReplayTable.render(runs.map(\.report), labels: configurations.count > 1 || conversational ? runs.map(\.label) : nil)
            out += "\nwall time \(String(format: "%.2f", wall)) s\n"
            FileHandle.standardError.write(Data(out.utf8))
        }
    }
}

extension TimedReplay {
    /// `--mode timed --pensieve`'s --policy list: lru (the device pool's prefix cache, nil), pensieve and
    /// conversation-lru (`ConversationRetention` with `PensieveRetention`'s pensieve and lru).
    static func retentions(_ list: String) throws -> [PensieveRetention.Policy?] {
        try list.split(separator: ",").map { name -> PensieveRetention.Policy? in
            switch name.trimmingCharacters(in: .whitespaces) {
            case "lru": return nil
            case "pensieve": return .pensieve
            case "conversation-lru": return .lru
            default: throw ValidationError("--mode timed --pensieve runs the policies lru, pensieve, conversation-lru; got '\(name)'")
            }
        }
    }

    /// The --policy name of a retention (nil: the prefix cache, lru).
    static func name(_ retention: PensieveRetention.Policy?) -> String {
        switch retention {
        case nil: "lru"
        case .pensieve: "pensieve"
        case .lru: "conversation-lru"
        case .prefixLRU: "conversation-prefix-lru"
        }
    }
}

/// The side-by-side table of timed runs.
enum TimedReplayTable {
    /// `labels` name the columns (default: the reservation policy, and the eviction policy too once one
    /// is not LRU).
    static func render(_ runs: [ModelledRunReport], labels: [String]? = nil) -> String {
        let named = runs.contains { $0.evictionPolicy != EvictionPolicyKind.lru.rawValue }
        let labels = labels ?? runs.map { named ? "\($0.reservation)/\($0.evictionPolicy)" : $0.reservation }
        func f(_ v: Double, _ digits: Int = 2) -> String { String(format: "%.\(digits)f", v) }
        var rows: [(String, (ModelledRunReport) -> String)] = [
            ("requests", { "\($0.requests)" + ($0.rejected > 0 ? " (+\($0.rejected) rejected)" : "") }),
            ("output tokens/s (modelled)", { f($0.outputTokensPerSecond, 1) }),
            ("requests/s (modelled)", { f($0.requestsPerSecond, 3) }),
            ("TTFT p50 s (modelled)", { f($0.ttftP50, 3) }),
            ("TTFT p99 s (modelled)", { f($0.ttftP99, 3) }),
            ("TPOT p50 s (modelled)", { f($0.tpotP50, 4) }),
            ("E2E p99 s (modelled)", { f($0.e2eP99, 2) }),
            ("preemptions", { "\($0.preemptions)" }),
            ("preempted tokens", { "\($0.preemptedTokens)" }),
            ("mean running", { f($0.meanRunning, 1) }),
            ("KV utilization mean", { f($0.kvUtilizationMean * 100, 1) + "%" }),
            ("makespan s (modelled)", { f($0.makespan, 1) }),
            ("prefix hit tokens", { "\($0.prefixHitTokens)" }),
            ("prefill tokens computed", { "\($0.prefillTokens)" }),
        ]
        if runs.contains(where: { $0.conversations != nil }) {
            func c(_ r: ModelledRunReport, _ f: (ConversationRunReport) -> String) -> String { r.conversations.map(f) ?? "-" }
            rows += [
                ("history tokens", { c($0) { "\($0.historyTokens)" } }),
                ("history GPU hit tokens", { c($0) { "\($0.gpuHitTokens)" } }),
                ("history host hit tokens", { c($0) { "\($0.hostHitTokens)" } }),
                ("recomputed tokens", { c($0) { "\($0.recomputedTokens)" } }),
                ("host hit rate", { c($0) { f($0.hostHitRate, 4) } }),
                ("to host on demand / ahead / dropped", { c($0) { "\($0.swappedBlocks) / \($0.aheadOfTimeBlocks) / \($0.droppedBlocks)" } }),
                ("host-link GiB, loads + copies down (modelled)", { c($0) { f($0.hostLinkBytes / 1_073_741_824, 2) } }),
            ]
        }
        if runs.contains(where: { $0.hostTier != nil }) {
            rows += [
                ("tier load tokens (host)", { "\($0.tierLoadTokens)" }),
                ("tier load GiB (modelled)", { f($0.tierLoadBytes / 1_073_741_824, 2) }),
                ("host tier loads pay", { $0.hostTier.map { $0.loadsPay ? "yes" : "no" } ?? "-" }),
            ]
        }
        if runs.contains(where: { $0.withoutTiers != nil }) {
            rows += [
                ("TTFT p50 s without tiers (modelled)", { $0.withoutTiers.map { f($0.ttftP50, 3) } ?? "-" }),
                ("TTFT p99 s without tiers (modelled)", { $0.withoutTiers.map { f($0.ttftP99, 3) } ?? "-" }),
                ("prefill tokens computed without tiers", { $0.withoutTiers.map { "\($0.prefillTokens)" } ?? "-" }),
            ]
        }
        let labelWidth = rows.map(\.0.count).max()! + 2
        let cells = runs.map { r in rows.map { $0.1(r) } }
        let widths = runs.indices.map { i in max(labels[i].count, cells[i].map(\.count).max() ?? 0) + 2 }
        func pad(_ s: String, _ w: Int, left: Bool = false) -> String {
            let p = String(repeating: " ", count: max(0, w - s.count))
            return left ? s + p : p + s
        }
        var out = pad("", labelWidth, left: true)
        for i in runs.indices { out += pad(labels[i], widths[i]) }
        out += "\n"
        for (k, row) in rows.enumerated() {
            out += pad(row.0, labelWidth, left: true)
            for i in runs.indices { out += pad(cells[i][k], widths[i]) }
            out += "\n"
        }
        return out
    }
}
