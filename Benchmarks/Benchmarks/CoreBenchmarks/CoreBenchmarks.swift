import Benchmark
import KVBench

/// The core's hot paths, the same workloads `kvcache bench core` times (KVBench). Each iteration
/// prepares its state untimed, then times one run; metrics include mallocs, which must stay 0 for
/// the steady-state paths (alloc/free, lookup apart from the sequence record, eviction).
@MainActor
let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput, .mallocCountTotal],
        maxDuration: .seconds(3),
        maxIterations: 2_000
    )

    func register(_ name: String, _ make: @escaping () throws -> any Workload) {
        nonisolated(unsafe) var workload: (any Workload)?
        Benchmark(name) { benchmark in
            if workload == nil { workload = try make() }
            let w = workload!
            try w.prepare()
            benchmark.startMeasurement()
            try w.run()
            benchmark.stopMeasurement()
        }
    }

    register("hash 32k tokens (2048 blocks of 16)") { HashWorkload() }
    register("hash 32k tokens (64 blocks of 512)") { HashWorkload(blockTokens: 512) }
    register("lookup cached 32k-token prompt") { try LookupWorkload() }
    register("lookup cached 32k-token prompt (blocks of 512)") { try LookupWorkload(blockTokens: 512) }
    register("allocate+free 6400 blocks") { try AllocFreeWorkload() }
    register("insert 2048 blocks") { try InsertWorkload() }
    register("evict ~1500 blocks") { try EvictWorkload() }
    // The embedded Mooncake sample through the C ABI at 16-token blocks (units: prompt blocks);
    // `kvcache bench trace` reports the same replay by call and by pool size.
    for pool in [32_000, 320_000] {
        register("trace through the C ABI, 16-token blocks, pool \(pool)") {
            try TraceControlPlane(mooncakePath: "../tools/kvcache/Resources/mooncake-synthetic-1000.jsonl",
                                  blockTokens: 16, poolBlocks: pool)
        }
    }
    register("trace through the C ABI, 512-token blocks, pool 2000") {
        try TraceControlPlane(mooncakePath: "../tools/kvcache/Resources/mooncake-synthetic-1000.jsonl",
                              blockTokens: 512, poolBlocks: 2_000)
    }
    register("tiers L1->L2->L1 round trip of one block x256") { try TierRoundTripWorkload() }
    // The tier calls through the C ABI in steady state: mallocs must stay 0 (tools/capi/allocs.sh).
    register("tier ABI: store, lookup, load, touch, take_events of a 32-block prompt x16") { try TierABIWorkload() }
    // Chunk reuse: lookups and plans allocate nothing once the plan's arrays (the handle's scratch) have grown.
    register("chunk lookup x4096") { try ChunkLookupWorkload() }
    register("chunk plan, 256 prompts of 8 chunks") { try ChunkPlanWorkload(throughCAPI: false) }
    register("chunk plan through the C ABI, 256 prompts of 8 chunks") { try ChunkPlanWorkload(throughCAPI: true) }
}
