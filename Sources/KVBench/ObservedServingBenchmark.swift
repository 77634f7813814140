import KVCache
import KVEvents
import KVMetrics

/// A serving cycle with and without the cache's outside reporting, timed side by side in one run:
/// each request is added, looked up, allocated, committed and freed on a pool small enough that it
/// evicts; "observed" also records events (token ids kept per sequence), publishes one batch per
/// request through a `ZmqEventPublisher` (msgpack encoding, PUB send, replay ring) and updates
/// `KVMetrics` from the stats, as a server would each step. Units are prompt blocks.
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
}

/// The serving cycle's cost per block with events and metrics off and on, measured alternately in the
/// same run (one repetition of each in turn, medians kept), and their ratio.
public struct ObservedServingFigures: Sendable {
    public var offNanosPerBlock: Double
    public var onNanosPerBlock: Double
    /// on / off: 1.0 is no cost.
    public var ratio: Double { onNanosPerBlock / offNanosPerBlock }

    public static func measure(repetitions: Int = 15) throws -> ObservedServingFigures {
        let off = try ObservedServingWorkload(observed: false), on = try ObservedServingWorkload(observed: true)
        try off.run(); try on.run()   // warm: the pools fill and start evicting
        var offSamples: [Double] = [], onSamples: [Double] = []
        for _ in 0 ..< repetitions {
            offSamples.append(try Measure.median(repetitions: 1, off.run) / Double(off.units))
            onSamples.append(try Measure.median(repetitions: 1, on.run) / Double(on.units))
        }
        offSamples.sort(); onSamples.sort()
        return ObservedServingFigures(offNanosPerBlock: offSamples[repetitions / 2] * 1e9,
                                      onNanosPerBlock: onSamples[repetitions / 2] * 1e9)
    }
}
