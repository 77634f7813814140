import KVCache
import KVData
import KVScheduler

/// The metrics of one modelled run. Every time is modelled (from the cost model), not measured.
public struct ModelledRunReport: Sendable {
    public var reservation: String
    /// The device pool's eviction policy.
    public var evictionPolicy = EvictionPolicyKind.lru.rawValue
    /// Requests that finished normally.
    public var requests: Int
    /// Requests dropped because they could not fit in the KV cache even alone.
    public var rejected: Int
    public var outputTokens: Int
    public var outputTokensPerSecond: Double
    public var requestsPerSecond: Double
    public var ttftP50: Double
    public var ttftP99: Double
    public var tpotP50: Double
    public var e2eP50: Double
    public var e2eP99: Double
    public var preemptions: Int
    public var preemptedTokens: Int
    /// Time-weighted mean of running sequences over busy time.
    public var meanRunning: Double
    /// Time-weighted mean fraction of KV blocks held by sequences over busy time.
    public var kvUtilizationMean: Double
    /// From the first arrival to the last finish, seconds.
    public var makespan: Double
    public var prefixHitTokens: Int
    public var steps: Int
    public var extensions: Int
    /// Steps a request waited for a block instead of preempting another (projected admission).
    public var stalls: Int
    /// Prompt (and recompute) tokens computed by prefill chunks.
    public var prefillTokens = 0
    /// Prompt tokens loaded from the host prefix tier (or a retention's host chunks) instead of recomputed.
    public var tierLoadTokens = 0
    /// Bytes those loads moved over the host link (modelled).
    public var tierLoadBytes = 0.0
    /// The host prefix tier's figures; nil when the run had none.
    public var hostTier: HostTierRunReport? = nil
    /// Every finished request's modelled latencies, in finishing order (rejected requests left out):
    /// the distributions behind the percentiles, for per-request output and CDFs.
    public var latencies: [RequestLatency] = []
    /// The conversations' history figures (`ModelledRunConfig.reportsConversations`); nil otherwise.
    public var conversations: ConversationRunReport? = nil
    /// The same run without the host tier, for comparison (set by the caller that ran both).
    public var withoutTiers: (ttftP50: Double, ttftP99: Double, prefillTokens: Int)? = nil

    /// The JSON object of this run (keys as `kvcache replay --mode timed --json` prints them).
    public var jsonFields: [(String, JSONValue)] {
        [("reservation", .string(reservation)), ("eviction_policy", .string(evictionPolicy)), ("requests", .int(requests)), ("rejected", .int(rejected)),
         ("output_tokens", .int(outputTokens)),
         ("output_tokens_per_s", .double(outputTokensPerSecond)), ("requests_per_s", .double(requestsPerSecond)),
         ("ttft_p50_s", .double(ttftP50)), ("ttft_p99_s", .double(ttftP99)), ("tpot_p50_s", .double(tpotP50)),
         ("e2e_p50_s", .double(e2eP50)), ("e2e_p99_s", .double(e2eP99)),
         ("preemptions", .int(preemptions)), ("preempted_tokens", .int(preemptedTokens)),
         ("mean_running", .double(meanRunning)), ("kv_utilization_mean", .double(kvUtilizationMean)),
         ("makespan_s", .double(makespan)), ("prefix_hit_tokens", .int(prefixHitTokens)),
         ("steps", .int(steps)), ("reservation_extensions", .int(extensions)), ("stalls", .int(stalls)),
         ("prefill_tokens", .int(prefillTokens))] + tierFields
            + (conversations?.jsonFields ?? [])
    }

    /// The host-tier keys, present only when the run had a host tier.
    var tierFields: [(String, JSONValue)] {
        guard let t = hostTier else { return [] }
        var f: [(String, JSONValue)] = [
            ("tier_load_tokens", .int(tierLoadTokens)), ("tier_load_bytes", .double(tierLoadBytes)),
            ("host_tier_blocks", .int(t.capacityBlocks)), ("host_tier_loads_pay", .bool(t.loadsPay)),
            ("host_tier_load_s_per_block", .double(t.loadSecondsPerBlock)),
            ("host_tier_recompute_s_per_block", .double(t.recomputeSecondsPerBlock)),
            ("host_tier_stored_blocks", .int(t.stats.stored)), ("host_tier_dropped_blocks", .int(t.stats.dropped)),
            ("host_tier_held_blocks", .int(t.heldBlocks)),
        ]
        if let w = withoutTiers {
            f += [("ttft_p50_s_without_tiers", .double(w.ttftP50)), ("ttft_p99_s_without_tiers", .double(w.ttftP99)),
                  ("prefill_tokens_without_tiers", .int(w.prefillTokens))]
        }
        return f
    }
}

/// One finished request of a modelled run; every time is modelled, in seconds.
public struct RequestLatency: Sendable, Equatable {
    /// The scheduler's sequence id (the request's 0-based position in the replayed arrivals).
    public var id: Int64
    public var arrival: Double
    /// Time to first token: first token (or finish) minus arrival.
    public var ttft: Double
    /// Time per output token after the first; nil with fewer than two output tokens.
    public var tpot: Double?
    /// Arrival to finish.
    public var e2e: Double
    public var promptTokens: Int
    public var outputTokens: Int
    public var preemptions: Int
}

/// What the host prefix tier did in one modelled run.
public struct HostTierRunReport: Sendable {
    public var capacityBlocks: Int
    /// Whether loads beat recomputes on the cost model (`HostTierAdmission`); when false nothing loads.
    public var loadsPay: Bool
    public var loadSecondsPerBlock: Double
    public var recomputeSecondsPerBlock: Double
    public var stats: HostPrefixTier.Stats
    /// Blocks held at the end.
    public var heldBlocks: Int
}

/// Accumulates per-request latencies and time-weighted occupancy during a run.
struct RunMetricsRecorder {
    var ttft: [Double] = []
    var tpot: [Double] = []
    var e2e: [Double] = []
    var outputTokens = 0
    var completed = 0
    var rejected = 0
    var lastFinish = 0.0
    var busy = 0.0
    var runningIntegral = 0.0
    var kvIntegral = 0.0
    var prefillTokens = 0
    var tierLoadBytes = 0.0
    var latencies: [RequestLatency] = []

    init(requests: Int) {
        latencies.reserveCapacity(requests)
        ttft.reserveCapacity(requests)
        e2e.reserveCapacity(requests)
        tpot.reserveCapacity(requests)
    }

    mutating func step(duration: Double, running: Int, kvUtilization: Double, batchedTokens: Int) {
        busy += duration
        runningIntegral += duration * Double(running)
        kvIntegral += duration * kvUtilization
    }

    mutating func prefill(tokens: Int) { prefillTokens += tokens }

    mutating func record(finished: [FinishedRequest]) {
        for f in finished {
            lastFinish = max(lastFinish, f.finishTime)
            if f.reason == .capacity { rejected += 1; continue }
            completed += 1
            outputTokens += f.outputTokens
            let first = f.firstTokenTime ?? f.finishTime
            ttft.append(first - f.arrival)
            e2e.append(f.finishTime - f.arrival)
            let perToken: Double? = f.outputTokens > 1 ? (f.finishTime - first) / Double(f.outputTokens - 1) : nil
            if let perToken { tpot.append(perToken) }
            latencies.append(RequestLatency(id: f.id.raw, arrival: f.arrival, ttft: first - f.arrival, tpot: perToken,
                                            e2e: f.finishTime - f.arrival, promptTokens: f.promptTokens,
                                            outputTokens: f.outputTokens, preemptions: f.preemptions))
        }
    }

    func report(policy: String, start: Double, stats: SchedulerStats) -> ModelledRunReport {
        let makespan = max(0, lastFinish - start)
        func pct(_ a: [Double], _ p: Double) -> Double {
            guard !a.isEmpty else { return 0 }
            let s = a.sorted()
            let rank = p * Double(s.count - 1)
            let lo = Int(rank), hi = min(s.count - 1, lo + 1)
            return s[lo] + (s[hi] - s[lo]) * (rank - Double(lo))
        }
        return ModelledRunReport(
            reservation: policy, requests: completed, rejected: rejected, outputTokens: outputTokens,
            outputTokensPerSecond: makespan > 0 ? Double(outputTokens) / makespan : 0,
            requestsPerSecond: makespan > 0 ? Double(completed) / makespan : 0,
            ttftP50: pct(ttft, 0.5), ttftP99: pct(ttft, 0.99), tpotP50: pct(tpot, 0.5),
            e2eP50: pct(e2e, 0.5), e2eP99: pct(e2e, 0.99),
            preemptions: stats.preemptions, preemptedTokens: stats.preemptedTokens,
            meanRunning: busy > 0 ? runningIntegral / busy : 0, kvUtilizationMean: busy > 0 ? kvIntegral / busy : 0,
            makespan: makespan, prefixHitTokens: stats.prefixHitTokens, steps: stats.steps, extensions: stats.extensions,
            stalls: stats.stalls, prefillTokens: prefillTokens, tierLoadTokens: stats.prefixLoadedTokens,
            tierLoadBytes: tierLoadBytes, latencies: latencies)
    }
}
