import Glibc
import KVCache
import KVEvents
import KVMetrics

/// A serving cycle with and without the cache's outside reporting, timed side by side in one run:
/// each request is added, looked up, allocated, committed and freed on a pool small enough that it
/// evicts; "observed" also records events (token ids kept per sequence), publishes one batch per
/// request through a `ZmqEventPublisher` (msgpack encoding, PUB send, replay ring) and updates
/// `KVMetrics` from the stats, as a server would each step. Units are prompt blocks.
///
/// The cycle does no engine work, so it publishes far faster than any engine (a 2048-token prefill
/// every few microseconds) and outruns the publisher thread; a real engine's forward passes give the
/// thread that time. So each run's batches are all sent before the next run starts (`drain`, untimed):
/// the backlog never exceeds one run's requests, and the thread's own cost is measured apart
/// (`threadCPUSeconds`).
public final class ObservedServingWorkload: Workload {
    let m: KVCacheManager
    let publisher: ZmqEventPublisher?
    let metrics: KVMetrics?
    let prompts: [[UInt32]]
    var next: Int64 = 0

    /// - Parameter observed: events and metrics on.
    public init(observed: Bool, requests: Int = 256, prefixTokens: Int = 1024, suffixTokens: Int = 1024,
                blockTokens: Int = 16) throws {
        let blocksPerPrompt = (prefixTokens + suffixTokens) / blockTokens
        m = try KVCacheManager(KVCacheConfig(blockTokens: blockTokens, capacityBlocks: blocksPerPrompt * requests / 4,
                                             recordEvents: observed))
        // Eight shared prefixes, each request's own suffix: hits, inserts and evictions every cycle.
        let prefixes = (0 ..< 8).map { syntheticTokens(prefixTokens, seed: 100 + UInt64($0)) }
        prompts = (0 ..< requests).map { prefixes[$0 % 8] + syntheticTokens(suffixTokens, seed: 200 + UInt64($0)) }
        if observed {
            var c = ZmqEventPublisher.Config()
            c.endpoint = "inproc://kvcache-bench-events"
            c.replayEndpoint = "inproc://kvcache-bench-replay"
            publisher = try ZmqEventPublisher(c)
            metrics = KVMetrics()
        } else {
            publisher = nil
            metrics = nil
        }
    }

    deinit { publisher?.close() }

    public var units: Int { prompts.reduce(0) { $0 + $1.count / m.blockTokens } }
    public func prepare() {}
    public func run() throws {
        for p in prompts {
            let id = SequenceID(next)
            next += 1
            try m.addSequence(id, prompt: p)
            let todo = p.count - (try m.lookup(id)).cachedTokens
            if case .allocated = try m.allocate(id, newTokens: todo) { try m.commit(id, computedTokens: todo) }
            try m.free(id)
            if let publisher { publisher.publish(from: m) }
            if let metrics { metrics.update(m.stats) }
        }
    }

    /// Sleeps until the publisher thread has sent every batch.
    func drain() {
        guard let publisher else { return }
        while publisher.unsentBatches > 0 { usleep(100) }
    }

    /// Runs the cycle until the publisher's replay ring is full (its slots reused from then on, as in a
    /// server that has run a while), sending each run's batches before the next.
    func warm() throws {
        repeat { try run(); drain() } while (publisher?.nextSequence ?? 0) < Int64(publisher?.config.bufferSteps ?? 0)
    }
}

/// The serving cycle's cost per block with events and metrics off and on, measured alternately in the
/// same run (one repetition of each in turn, the order swapped every pair), and their ratio. Two
/// clocks: the serving thread's CPU time (what the hot path pays: its own work, the event recording and
/// the queueing, but not the publisher thread's encoding and sending, which runs on another core) and
/// wall time (which also counts that thread taking the serving thread's core away on a busy machine).
/// The publisher thread's CPU time per block is reported beside them.
///
/// With `control`, the "on" side is a second workload with events and metrics off (an A/A run): its
/// ratio is the measurement's own noise, which a single run's ratio should be read against.
///
/// The ratios are medians of each pair's ratio, not ratios of the two medians: a shared machine's
/// speed drifts between modes that last several repetitions (this cycle runs at 60-65 or at 100-110
/// ns per block on the same process, in stretches), and a pair, timed back to back, sees one mode
/// where the two medians can each fall in a different one.
public struct ObservedServingFigures: Sendable {
    public var offNanosPerBlock: Double
    public var onNanosPerBlock: Double
    public var offWallNanosPerBlock: Double
    public var onWallNanosPerBlock: Double
    /// The publisher thread's CPU time (encoding and sending) per block of the observed cycle.
    public var publisherNanosPerBlock: Double
    /// on / off of the serving thread's CPU time, the median over the pairs: 1.0 is no cost.
    public var ratio: Double
    /// on / off of wall time, the median over the pairs.
    public var wallRatio: Double

    /// (serving thread CPU, wall, publisher thread CPU) seconds per unit of one run; the publisher's
    /// backlog is sent before the run ends (untimed), so each run pays for its own batches.
    static func time(_ w: ObservedServingWorkload) throws -> (Double, Double, Double) {
        let publisher0 = w.publisher?.threadCPUSeconds ?? 0
        let cpu0 = KVClock.threadCPUNanos(), wall0 = KVClock.monotonicNanos()
        try w.run()
        let cpu1 = KVClock.threadCPUNanos(), wall1 = KVClock.monotonicNanos()
        w.drain()
        let publisher = (w.publisher?.threadCPUSeconds ?? 0) - publisher0
        let units = Double(w.units)
        return (KVClock.seconds(from: cpu0, to: cpu1) / units, KVClock.seconds(from: wall0, to: wall1) / units,
                publisher / units)
    }

    public static func measure(repetitions: Int = 15, control: Bool = false) throws -> ObservedServingFigures {
        let off = try ObservedServingWorkload(observed: false), on = try ObservedServingWorkload(observed: !control)
        try off.warm(); try on.warm()   // the pools fill and evict, the replay ring fills
        // off, on CPU; off, on wall; publisher; the CPU and wall ratios
        var samples: [[Double]] = Array(repeating: [], count: 7)
        for i in 0 ..< repetitions {
            let a: (Double, Double, Double), b: (Double, Double, Double)
            if i % 2 == 0 { a = try time(off); b = try time(on) } else { b = try time(on); a = try time(off) }
            for (k, v) in [a.0, b.0, a.1, b.1, b.2, b.0 / a.0, b.1 / a.1].enumerated() { samples[k].append(v) }
        }
        let m = samples.map(Measure.median(of:))
        return ObservedServingFigures(offNanosPerBlock: m[0] * 1e9, onNanosPerBlock: m[1] * 1e9,
                                      offWallNanosPerBlock: m[2] * 1e9, onWallNanosPerBlock: m[3] * 1e9,
                                      publisherNanosPerBlock: m[4] * 1e9, ratio: m[5], wallRatio: m[6])
    }
}
