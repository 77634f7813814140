import Foundation

/// `kvcache report`'s page: one self-contained HTML file (inline CSS and SVG, no script, nothing fetched)
/// with four charts built from any number of reports (`Report` JSON of any subcommand; runs that do not
/// carry a chart's figures are skipped):
///
/// - `chart-hit-rate`: token hit rate against capacity (blocks), one line per policy (sequential,
///   knowledge-tree runs: `policy`, `capacity_blocks`, `token_hit_rate`);
/// - `chart-tier-hits`: hit tokens by tier as a share of input tokens, one stacked bar per run
///   (`hit_tokens_l1/l2/l3`);
/// - `chart-ttft-cdf`, `chart-tpot-cdf`: TTFT and TPOT CDFs, one line per timed run (`*_percentiles_s`);
/// - `chart-occupancy`: blocks held per tier against requests replayed, per tiered run (`occupancy`).
///
/// A chart without data says so in place of its drawing (the element is still there). O(runs x points).
struct HTMLReportPage {
    /// One input report: where it came from and its decoded JSON object.
    struct Input {
        var path: String
        var object: [String: Any]
    }

    var inputs: [Input]

    /// Every chart's element id, in page order.
    static let chartIDs = ["chart-hit-rate", "chart-tier-hits", "chart-ttft-cdf", "chart-tpot-cdf", "chart-occupancy"]

    /// The runs of every input, each with its report's call-wide fields folded in (run fields win).
    private var runs: [[String: Any]] {
        inputs.flatMap { input -> [[String: Any]] in
            let top = input.object.filter { $0.key != "runs" }
            return (input.object["runs"] as? [[String: Any]] ?? []).map { run in top.merging(run) { _, r in r } }
        }
    }

    func html() -> String {
        let runs = self.runs
        var body = ""
        body += section(hitRate(runs), empty: "No run with policy, capacity_blocks and token_hit_rate (kvcache replay in sequential mode).")
        body += section(tierHits(runs), empty: "No run with hit_tokens_l1/l2/l3 (kvcache replay in sequential mode).")
        body += section(cdf(runs, key: "ttft_percentiles_s", id: "chart-ttft-cdf", title: "TTFT CDF (modelled)", x: "time to first token (s)"),
                        empty: "No timed run (kvcache replay --mode timed).")
        body += section(cdf(runs, key: "tpot_percentiles_s", id: "chart-tpot-cdf", title: "TPOT CDF (modelled)", x: "time per output token (s)"),
                        empty: "No timed run (kvcache replay --mode timed).")
        body += section(occupancy(runs), empty: "No tiered run (kvcache replay --cpu-blocks N [--disk-blocks M]).")
        let sources = inputs.map { input -> String in
            let mode = (input.object["mode"] as? String).map { " (\(HTMLText.escape($0)))" } ?? ""
            return "<li><code>\(HTMLText.escape(input.path))</code>: \(HTMLText.escape(input.object["command"] as? String ?? "?"))"
                + mode + ", \((input.object["runs"] as? [Any])?.count ?? 0) runs</li>"
        }.joined(separator: "\n")
        return """
            <!DOCTYPE html>
            <html lang="en">
            <head>
            <meta charset="utf-8">
            <meta name="viewport" content="width=device-width, initial-scale=1">
            <title>kvcache report</title>
            <style>
            body { font-family: sans-serif; margin: 24px; color: #222; max-width: 960px; }
            h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 28px; }
            .chart text { font-size: 11px; fill: #333; font-family: sans-serif; }
            .chart .chart-title { font-size: 14px; font-weight: bold; }
            .chart .axis-title { font-size: 12px; }
            .chart .grid { stroke: #e4e4e4; } .chart .axis { stroke: #555; }
            .empty { color: #777; font-style: italic; }
            </style>
            </head>
            <body>
            <h1>kvcache report</h1>
            <p>Times marked modelled come from the roofline cost model, not from a measurement.</p>
            <ul class="sources">
            \(sources)
            </ul>
            \(body)
            </body>
            </html>

            """
    }

    /// A chart's figure, or its id with the reason it is empty.
    private func section(_ chart: (id: String, svg: SVGChart?), empty: String) -> String {
        guard let svg = chart.svg else {
            return "<figure id=\"\(chart.id)\" class=\"chart-empty\"><p class=\"empty\">\(HTMLText.escape(empty))</p></figure>\n"
        }
        return "<figure>\n" + svg.svg() + "</figure>\n"
    }

    private static func number(_ any: Any?) -> Double? {
        switch any {
        case let n as NSNumber: n.doubleValue
        case let d as Double: d
        case let i as Int: Double(i)
        default: nil
        }
    }

    private func hitRate(_ runs: [[String: Any]]) -> (id: String, svg: SVGChart?) {
        var byPolicy: [String: [(x: Double, y: Double)]] = [:]
        var order: [String] = []
        for run in runs {
            guard let policy = run["policy"] as? String, let c = Self.number(run["capacity_blocks"]),
                  let rate = Self.number(run["token_hit_rate"]) else { continue }
            let tiered = (Self.number(run["cpu_blocks"]) ?? 0) + (Self.number(run["disk_blocks"]) ?? 0) > 0
                || (Self.number(run["host_blocks"]) ?? 0) > 0
            var name = (run["mode"] as? String).map { $0 == "sequential" ? policy : "\(policy) (\($0))" } ?? policy
            if tiered { name += " + host/disk tiers" }
            if byPolicy[name] == nil { order.append(name) }
            byPolicy[name, default: []].append((c, rate))
        }
        let id = "chart-hit-rate"
        guard !order.isEmpty else { return (id, nil) }
        let series = order.map { SVGChart.Series(name: $0, points: byPolicy[$0]!.sorted { $0.x < $1.x }) }
        return (id, SVGChart(id: id, title: "Token hit rate against capacity", xTitle: "capacity (blocks)",
                             yTitle: "token hit rate", kind: .lines(series), unitY: true))
    }

    private func tierHits(_ runs: [[String: Any]]) -> (id: String, svg: SVGChart?) {
        var bars: [SVGChart.Bar] = []
        for run in runs {
            guard let l1 = Self.number(run["hit_tokens_l1"]), let l2 = Self.number(run["hit_tokens_l2"]),
                  let l3 = Self.number(run["hit_tokens_l3"]), let input = Self.number(run["input_tokens"]), input > 0 else { continue }
            let label = "\(run["policy"] as? String ?? "?")@\(Self.number(run["capacity_blocks"]).map { SVGChart.tick($0) } ?? "?")"
            bars.append(SVGChart.Bar(label: label, values: [l1 / input, l2 / input, l3 / input]))
        }
        let id = "chart-tier-hits"
        guard !bars.isEmpty else { return (id, nil) }
        return (id, SVGChart(id: id, title: "Hit tokens by tier (share of input tokens)", xTitle: "policy@capacity (blocks)",
                             yTitle: "share of input tokens", kind: .stackedBars(layers: ["L1 device", "L2 host", "L3 disk"], bars: bars)))
    }

    private func cdf(_ runs: [[String: Any]], key: String, id: String, title: String, x: String) -> (id: String, svg: SVGChart?) {
        var series: [SVGChart.Series] = []
        for run in runs {
            guard let values = run[key] as? [Any], values.count > 1 else { continue }
            let ys = values.compactMap { Self.number($0) }
            guard ys.count == values.count else { continue }
            let name = "\(run["reservation"] as? String ?? run["policy"] as? String ?? "?")"
                + (Self.number(run["kv_gib"]).map { " \(SVGChart.tick($0)) GiB" } ?? "")
                + (Self.number(run["cpu_gib"]).flatMap { $0 > 0 ? " +\(SVGChart.tick($0)) GiB host" : nil } ?? "")
            let n = Double(ys.count - 1)
            series.append(SVGChart.Series(name: name, points: ys.enumerated().map { (x: $1, y: Double($0) / n) }))
        }
        guard !series.isEmpty else { return (id, nil) }
        return (id, SVGChart(id: id, title: title, xTitle: x, yTitle: "fraction of requests", kind: .lines(series),
                             unitY: true, steps: true))
    }

    private func occupancy(_ runs: [[String: Any]]) -> (id: String, svg: SVGChart?) {
        var series: [SVGChart.Series] = []
        for run in runs {
            guard let samples = run["occupancy"] as? [[String: Any]], !samples.isEmpty else { continue }
            let label = "\(run["policy"] as? String ?? "?")@\(Self.number(run["capacity_blocks"]).map { SVGChart.tick($0) } ?? "?")"
            for (tier, key) in [("L1", "l1_blocks"), ("L2", "l2_blocks"), ("L3", "l3_blocks")] {
                let points = samples.compactMap { s -> (x: Double, y: Double)? in
                    guard let r = Self.number(s["request"]), let b = Self.number(s[key]) else { return nil }
                    return (r, b)
                }
                if points.contains(where: { $0.y > 0 }) { series.append(SVGChart.Series(name: "\(label) \(tier)", points: points)) }
            }
        }
        let id = "chart-occupancy"
        guard !series.isEmpty else { return (id, nil) }
        return (id, SVGChart(id: id, title: "Tier occupancy over the replay", xTitle: "requests replayed",
                             yTitle: "blocks held", kind: .lines(series)))
    }
}
