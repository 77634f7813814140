import Foundation
import KVData
import KVEvents
import KVMetrics
import KVSimulation
import Prometheus

/// `kvcache replay --metrics FILE`: every sequential run's final figures in one Prometheus registry,
/// labelled by policy and capacity, written as the text exposition once the replay ends. The tiers'
/// load latencies are not observed in a replay (its harness sets no load observer): those histograms
/// stay empty. O(metrics) per run.
struct ReplayMetrics {
    let path: String
    let registry = PrometheusCollectorRegistry()

    /// Records one run's final counters (call before `finish`, while the tiers are open).
    func record(_ replay: SequentialReplay, policy: String, capacity: Int) {
        let metrics = KVMetrics(labels: [("policy", policy), ("capacity_blocks", "\(capacity)")], registry: registry)
        metrics.update(replay.manager.stats)
        if let tiers = replay.tiered?.tiers { metrics.update(tiers.statistics) }
    }

    /// Writes the exposition to `path`.
    func write() throws {
        // Through OutputFile: a link, device or FIFO at `path` is refused, never replaced.
        do { try OutputFile.write(Array(registry.emitToString().utf8), to: path) } catch {
            throw CLIError("--metrics: \(error.description)")
        }
    }
}
