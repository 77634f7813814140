import KVData
import KVSimulation

/// One timed run (a reservation policy at one KV budget and host tier size) and its report object:
/// the engine's figures (`ModelledRunReport.jsonFields`), the sizes, and the per-request latency
/// distributions as percentiles (`ttft_percentiles_s[i]` is the i-th percentile, i = 0...100, linear
/// between order statistics; empty when no request finished), for CDFs. Every time is modelled.
struct TimedRun {
    var report: ModelledRunReport
    var config: ModelledRunConfig
    var wall: Double

    /// The column label of the side-by-side table.
    var label: String {
        let name = report.conversations != nil ? TimedReplay.name(config.retention)
            : "\(report.reservation)" + (report.evictionPolicy == "lru" ? "" : "/\(report.evictionPolicy)")
        return name + "@\(Self.gib(config.kvBytes))G" + (config.hostTierBytes > 0 ? "+\(Self.gib(config.hostTierBytes))G" : "")
    }

    static func gib(_ bytes: Double) -> String {
        let g = bytes / 1_073_741_824
        return g == g.rounded() ? String(Int(g)) : String(format: "%.2f", g)
    }

    var json: JSONValue {
        .object(report.jsonFields + [
            ("kv_gib", .double(config.kvBytes / 1_073_741_824)), ("capacity_blocks", .int(config.capacityBlocks)),
            ("cpu_gib", .double(config.hostTierBytes / 1_073_741_824)),
            ("ttft_percentiles_s", Self.percentiles(report.latencies.map(\.ttft))),
            ("tpot_percentiles_s", Self.percentiles(report.latencies.compactMap(\.tpot))),
            ("e2e_percentiles_s", Self.percentiles(report.latencies.map(\.e2e))),
            ("wall_s", .double(wall)),
        ])
    }

    /// One line of `--requests-out`.
    func record(_ l: RequestLatency) -> TimedRequestRecord {
        TimedRequestRecord(reservation: report.reservation, kvGib: config.kvBytes / 1_073_741_824,
                           cpuGib: config.hostTierBytes / 1_073_741_824, id: l.id, arrivalS: l.arrival, ttftS: l.ttft,
                           tpotS: ReportNumber(l.tpot), e2eS: l.e2e, promptTokens: l.promptTokens,
                           outputTokens: l.outputTokens, preemptions: l.preemptions,
                           policy: report.conversations != nil ? TimedReplay.name(config.retention) : nil)
    }

    /// The 0th...100th percentiles of `values`. O(n log n).
    static func percentiles(_ values: [Double]) -> JSONValue {
        guard !values.isEmpty else { return .array([]) }
        let s = values.sorted()
        return .array((0...100).map { p in
            let rank = Double(p) / 100 * Double(s.count - 1)
            let lo = Int(rank), hi = min(s.count - 1, lo + 1)
            return .double(s[lo] + (s[hi] - s[lo]) * (rank - Double(lo)))
        })
    }
}

/// One finished request of a timed run, a line of `--requests-out` (times modelled, seconds).
struct TimedRequestRecord: Encodable {
    var reservation: String
    var kvGib: Double
    var cpuGib: Double
    var id: Int64
    var arrivalS: Double
    var ttftS: Double
    var tpotS: ReportNumber
    var e2eS: Double
    var promptTokens: Int
    var outputTokens: Int
    var preemptions: Int
    /// `--pensieve`: the run's --policy (lru, pensieve, conversation-lru); absent otherwise.
    var policy: String?
}
