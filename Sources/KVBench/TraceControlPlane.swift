import CKVCache
import KVCache
import KVCacheC
import KVData

/// The control plane of a serving engine driven by a real trace through the C ABI (kvcache.h),
/// one request at a time, at any block size: for each request `kvcache_add_sequence` (hashing),
/// `kvcache_lookup`, `kvcache_allocate` of the uncached tokens, `kvcache_commit` of them and
/// `kvcache_free_sequence`; each phase timed on its own. This is the op stream vLLM's
/// `KVCacheManager` and SGLang's `RadixCache` see for a trace replayed without batching.
///
/// Token ids are synthesized per hash id: block `b` of the trace (`hashBlockTokens` tokens, 512 in
/// Mooncake traces) holds the tokens `SplitMix64(seed: b)` draws below a 128k vocabulary, so equal
/// ids give equal tokens and a request's prompt is its ids' tokens cut to `inputTokens`. A prompt is
/// built before its request's calls, outside the timed phases. Requests without hash ids are
/// skipped. Memory: the pool's index plus one prompt buffer, reused. `prepare` opens a fresh cache,
/// `run` replays the whole trace on it (a `Workload` whose units are prompt blocks).
public final class TraceControlPlane: Workload {
    /// Nanoseconds per prompt block spent in each call, hit tokens and evictions of one replay.
    public struct Figures: Sendable {
        public var poolBlocks: Int
        public var requests: Int
        public var promptBlocks: Int
        public var promptTokens: Int
        public var hitTokens: Int
        public var evictedBlocks: Int
        public var addNanosPerBlock: Double
        public var lookupNanosPerBlock: Double
        public var allocateNanosPerBlock: Double
        public var commitNanosPerBlock: Double
        public var freeNanosPerBlock: Double
        /// lookup + allocate + commit + free: the cache's work per block once the keys exist.
        public var serveNanosPerBlock: Double {
            lookupNanosPerBlock + allocateNanosPerBlock + commitNanosPerBlock + freeNanosPerBlock
        }
    }

    /// A failed C call: its name, status name and `kvcache_last_error()` text.
    public struct CallFailed: Error, CustomStringConvertible {
        public var description: String
    }

    let requests: [TraceRequest]
    let blockTokens: Int
    /// The pool size `prepare` gives the next cache.
    public var poolBlocks: Int
    private var prompt: [UInt32] = []
    private var cache: OpaquePointer?
    /// The figures of the last `run`.
    public private(set) var last: Figures?

    /// - Parameters:
    ///   - requests: the trace; only requests with hash ids are replayed.
    ///   - blockTokens: tokens per cache block (16 is vLLM's and SGLang's serving granularity).
    ///   - poolBlocks: blocks in the pool of each replay.
    public init(requests: [TraceRequest], blockTokens: Int, poolBlocks: Int) {
        self.requests = requests.filter { !$0.hashIDs.isEmpty && $0.inputTokens > 0 }
        self.blockTokens = blockTokens
        self.poolBlocks = poolBlocks
        prompt.reserveCapacity(self.requests.map(\.inputTokens).max() ?? 0)
    }

    /// Reads the Mooncake-format trace at `path` (gzip or not) and prepares to replay it.
    /// - Throws: `DataError` naming the file (and line) when it cannot be read.
    public convenience init(mooncakePath path: String, blockTokens: Int, poolBlocks: Int) throws(DataError) {
        self.init(requests: try TraceLoader.load(path: path, format: .mooncake).requests,
                  blockTokens: blockTokens, poolBlocks: poolBlocks)
    }

    deinit { if let cache { _ = kvcache_destroy(cache) } }

    /// Replays the whole trace on a fresh cache of `poolBlocks` blocks (LRU) `repetitions` times
    /// and keeps the run whose serve time is the median. O(trace tokens) per run.
    public func measure(poolBlocks: Int, repetitions: Int) throws -> Figures {
        self.poolBlocks = poolBlocks
        var runs: [Figures] = []
        for _ in 0 ..< repetitions {
            try prepare()
            try run()
            runs.append(last!)
        }
        runs.sort { $0.serveNanosPerBlock < $1.serveNanosPerBlock }
        return runs[runs.count / 2]
    }

    /// Opens a fresh, empty cache of `poolBlocks` blocks for the next `run`.
    public func prepare() throws {
        if let cache { _ = kvcache_destroy(cache) }
        cache = nil
        var config = kvcache_config()
        try check(kvcache_config_init(&config), "kvcache_config_init")
        config.block_tokens = Int64(blockTokens)
        config.capacity_blocks = Int64(poolBlocks)
        try check(kvcache_create(&config, &cache), "kvcache_create")
    }

    /// Prompt blocks of the whole trace (the unit of the Benchmarks package's figures).
    public var units: Int { requests.reduce(0) { $0 + ($1.inputTokens + blockTokens - 1) / blockTokens } }

    /// Replays every request once on the cache `prepare` opened.
    public func run() throws {
        guard let cache else { throw CallFailed(description: "run before prepare") }
        var phase = (add: UInt64(0), lookup: UInt64(0), allocate: UInt64(0), commit: UInt64(0), free: UInt64(0))
        var hit = kvcache_prefix_hit(), allocation = kvcache_allocation()
        var promptBlocks = 0, promptTokens = 0
        for (index, request) in requests.enumerated() {
            synthesize(request)
            let id = Int64(index)
            let t0 = KVClock.monotonicNanos()
            try prompt.withUnsafeBufferPointer { p in
                try check(kvcache_add_sequence(cache, id, p.baseAddress, p.count, nil, nil, nil, 0), "kvcache_add_sequence")
            }
            let t1 = KVClock.monotonicNanos()
            try check(kvcache_lookup(cache, id, &hit), "kvcache_lookup")
            let todo = Int64(prompt.count) - hit.cached_tokens
            let t2 = KVClock.monotonicNanos()
            try check(kvcache_allocate(cache, id, todo, 0, &allocation), "kvcache_allocate")
            let t3 = KVClock.monotonicNanos()
            try check(kvcache_commit(cache, id, todo), "kvcache_commit")
            let t4 = KVClock.monotonicNanos()
            try check(kvcache_free_sequence(cache, id), "kvcache_free_sequence")
            let t5 = KVClock.monotonicNanos()
            phase.add += t1 - t0; phase.lookup += t2 - t1; phase.allocate += t3 - t2
            phase.commit += t4 - t3; phase.free += t5 - t4
            promptBlocks += (prompt.count + blockTokens - 1) / blockTokens
            promptTokens += prompt.count
        }
        var stats = kvcache_stats()
        try check(kvcache_get_stats(cache, &stats), "kvcache_get_stats")
        let per = { (ns: UInt64) in Double(ns) / Double(max(promptBlocks, 1)) }
        last = Figures(poolBlocks: poolBlocks, requests: requests.count, promptBlocks: promptBlocks,
                       promptTokens: promptTokens, hitTokens: Int(stats.hit_tokens),
                       evictedBlocks: Int(stats.evicted_blocks), addNanosPerBlock: per(phase.add),
                       lookupNanosPerBlock: per(phase.lookup), allocateNanosPerBlock: per(phase.allocate),
                       commitNanosPerBlock: per(phase.commit), freeNanosPerBlock: per(phase.free))
    }

    /// Fills `prompt` with the request's tokens: each hash id's block of tokens, cut to its length.
    private func synthesize(_ request: TraceRequest) {
        prompt.removeAll(keepingCapacity: true)
        for id in request.hashIDs where prompt.count < request.inputTokens {
            var generator = SplitMix64(seed: id)
            let n = min(request.hashBlockTokens, request.inputTokens - prompt.count)
            for _ in 0 ..< n { prompt.append(UInt32(truncatingIfNeeded: generator.next() % 128_000)) }
        }
    }

    private func check(_ status: kvcache_status, _ call: String) throws {
        guard status != 0 else { return }
        throw CallFailed(description: "\(call): \(String(cString: kvcache_status_name(status))): \(String(cString: kvcache_last_error()))")
    }
}
