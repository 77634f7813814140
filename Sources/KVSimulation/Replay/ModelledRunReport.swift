import KVScheduler

/// The metrics of one modelled run. Every time is modelled (from the cost model), not measured.
public struct ModelledRunReport: Sendable {
    public var reservation: String
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

    /// The JSON object of this run (keys as `kvcache replay --mode timed --json` prints them).
    public var jsonFields: [(String, JSONValue)] {
        [("reservation", .string(reservation)), ("requests", .int(requests)), ("rejected", .int(rejected)),
         ("output_tokens", .int(outputTokens)),
         ("output_tokens_per_s", .double(outputTokensPerSecond)), ("requests_per_s", .double(requestsPerSecond)),
         ("ttft_p50_s", .double(ttftP50)), ("ttft_p99_s", .double(ttftP99)), ("tpot_p50_s", .double(tpotP50)),
         ("e2e_p50_s", .double(e2eP50)), ("e2e_p99_s", .double(e2eP99)),
         ("preemptions", .int(preemptions)), ("preempted_tokens", .int(preemptedTokens)),
         ("mean_running", .double(meanRunning)), ("kv_utilization_mean", .double(kvUtilizationMean)),
         ("makespan_s", .double(makespan)), ("prefix_hit_tokens", .int(prefixHitTokens)),
         ("steps", .int(steps)), ("reservation_extensions", .int(extensions)), ("stalls", .int(stalls))]
    }
}

/// A JSON value small enough for the reports (objects keep key order).
public indirect enum JSONValue: Sendable {
    case string(String), int(Int), double(Double), bool(Bool), null
    case array([JSONValue]), object([(String, JSONValue)])

    /// Compact JSON text.
    public var text: String {
        switch self {
        case let .string(s): return JSONValue.quote(s)
        case let .int(i): return String(i)
        case let .double(d): return d.isFinite ? String(d) : "null"
        case let .bool(b): return b ? "true" : "false"
        case .null: return "null"
        case let .array(a): return "[" + a.map(\.text).joined(separator: ",") + "]"
        case let .object(o): return "{" + o.map { JSONValue.quote($0.0) + ":" + $0.1.text }.joined(separator: ",") + "}"
        }
    }

    static func quote(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 {
                    let h = String(u.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - h.count) + h
                } else { out.unicodeScalars.append(u) }
            }
        }
        return out + "\""
    }
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

    init(requests: Int) {
        ttft.reserveCapacity(requests)
        e2e.reserveCapacity(requests)
        tpot.reserveCapacity(requests)
    }

    mutating func step(duration: Double, running: Int, kvUtilization: Double, batchedTokens: Int) {
        busy += duration
        runningIntegral += duration * Double(running)
        kvIntegral += duration * kvUtilization
    }

    mutating func record(finished: [FinishedRequest]) {
        for f in finished {
            lastFinish = max(lastFinish, f.finishTime)
            if f.reason == .capacity { rejected += 1; continue }
            completed += 1
            outputTokens += f.outputTokens
            let first = f.firstTokenTime ?? f.finishTime
            ttft.append(first - f.arrival)
            e2e.append(f.finishTime - f.arrival)
            if f.outputTokens > 1 { tpot.append((f.finishTime - first) / Double(f.outputTokens - 1)) }
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
            stalls: stats.stalls)
    }
}
