// swift-tools-version:6.1
import PackageDescription

/// The ABI major version of include/kvcache.h (KVCACHE_ABI_VERSION): the number in the library's SONAME.
let abiMajor = 1
/// Linker flags of the shipped C library: the Swift runtime linked statically (nothing from the toolchain
/// is needed at run time), the SONAME, and a version script that keeps every symbol but `kvcache_*` local.
let sharedLibraryFlags = [
    "-static-stdlib", "-use-ld=lld",
    "-Xlinker", "-soname=libkvcache_c.so.\(abiMajor)",
    "-Xlinker", "--version-script=\(Context.packageDirectory)/tools/capi/kvcache.map",
]
/// Linker flags of libkvcache_config.so, which libkvcache_c.so opens with dlopen for the configuration
/// and event calls: the Swift runtime and Foundation (which the YAML reader of KVConfig needs) linked
/// statically, its own SONAME, only the `kvcache_config_library_*` functions exported.
let configLibraryFlags = [
    "-static-stdlib", "-use-ld=lld",
    "-Xlinker", "-soname=libkvcache_config.so.\(abiMajor)",
    "-Xlinker", "--version-script=\(Context.packageDirectory)/tools/capi/kvcache_config.map",
    // The archives Foundation's own archive references, which the static-stdlib defaults leave out of a
    // shared library.
    "-Xlinker", "-lCoreFoundation", "-Xlinker", "-l_FoundationICU", "-Xlinker", "-l_FoundationCShims",
    "-Xlinker", "-l_FoundationCollections",
]

let package = Package(
    name: "swift-kvcache",
    // Linux only: the tiers need Glibc and libnuma (SystemIO stops other platforms with an #error).
    products: [
        .library(name: "KVCache", targets: ["KVCache"]),
        .library(name: "KVPlan", targets: ["KVPlan"]),
        .library(name: "KVTiers", targets: ["KVTiers"]),
        .library(name: "KVScheduler", targets: ["KVScheduler"]),
        .library(name: "KVRuntime", targets: ["KVRuntime"]),
        .library(name: "KVData", targets: ["KVData"]),
        .library(name: "KVPrediction", targets: ["KVPrediction"]),
        .library(name: "KVTestSupport", targets: ["KVTestSupport"]),
        .library(name: "KVSimulation", targets: ["KVSimulation"]),
        .library(name: "KVReferenceEngine", targets: ["KVReferenceEngine"]),
        .library(name: "KVBench", targets: ["KVBench"]),
        .library(name: "KVHybrid", targets: ["KVHybrid"]),
        .library(name: "KVChunks", targets: ["KVChunks"]),
        .library(name: "KVEvents", targets: ["KVEvents"]),
        .library(name: "KVMetrics", targets: ["KVMetrics"]),
        .library(name: "KVConfig", targets: ["KVConfig"]),
        .executable(name: "kvcache", targets: ["kvcache"]),
        // The C ABI (include/kvcache.h) as libkvcache_c.so for C, C++ and Python servers: the Swift runtime
        // linked in, SONAME libkvcache_c.so.<ABI major>, only the kvcache_* symbols exported (docs/C_API.md).
        .library(name: "kvcache_c", type: .dynamic, targets: ["KVCacheCLibrary"]),
        // Configuration (KVCACHE_* variables, YAML) and the ZMQ event publisher for libkvcache_c.so, which
        // opens it with dlopen on first use, so the core library needs neither Foundation nor libzmq.
        .library(name: "kvcache_config", type: .dynamic, targets: ["KVCacheConfigLibraryProduct"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.5.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.1.0"),
        // KVCACHE_* environment variables and YAML files (the YAML trait brings Yams).
        .package(url: "https://github.com/apple/swift-configuration", from: "1.4.0", traits: ["YAML"]),
        // The YAML parser under swift-configuration's trait, also read directly to name unknown keys.
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
    ],
    targets: [
        // System-library shims: a module map and one header each, nothing else.
        // xxhash.h only, compiled inline (XXH_INLINE_ALL): no libxxhash at link or run time.
        .systemLibrary(name: "CXXHash", providers: [.apt(["libxxhash-dev"])]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd",
                       providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CNuma", pkgConfig: "numa",
                       providers: [.apt(["libnuma-dev"])]),
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib",
                       providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CZmq", pkgConfig: "libzmq",
                       providers: [.apt(["libzmq3-dev"])]),
        .systemLibrary(name: "CMsgpack", pkgConfig: "msgpack",
                       providers: [.apt(["libmsgpack-dev"])]),

        // The core: allocator, block keys, radix prefix index, eviction policies, the facade.
        .target(name: "KVCache", dependencies: ["CXXHash"]),
        // What an engine runs: the step plan, the KV geometry, the protocols of lower tiers and swap space.
        .target(name: "KVPlan", dependencies: ["KVCache"]),
        // Lower tiers: NUMA host memory, zstd disk store, async transfers.
        .target(name: "KVTiers", dependencies: ["KVCache", "KVPlan", "CZstd", "CNuma", "CXXHash",
                                               .product(name: "Logging", package: "swift-log")]),
        // vLLM-shaped counters, gauges and histograms of the cache and its tiers (swift-metrics) in a
        // Prometheus registry of their own, for the text exposition.
        .target(name: "KVMetrics", dependencies: ["KVCache",
                                                 .product(name: "CoreMetrics", package: "swift-metrics"),
                                                 .product(name: "Prometheus", package: "swift-prometheus")]),
        // What the cache tells the outside: KV events on the wire (vLLM's msgpack schema over a ZMQ PUB
        // socket with a replay socket) and the tiers' figures into KVMetrics.
        .target(name: "KVEvents", dependencies: ["KVCache", "KVTiers", "KVMetrics", "KVConfig", "CZmq", "CMsgpack"]),
        // The embedded library's settings (cache, policy, tiers, event endpoints) from KVCACHE_* environment
        // variables and a YAML file, typed and validated.
        .target(name: "KVConfig", dependencies: ["KVCache", "KVPlan", "KVTiers", .product(name: "Configuration", package: "swift-configuration"),
                                                .product(name: "Yams", package: "Yams")]),
        // Prefix caching for hybrid attention + SSM models (Marconi): the model, the tree, the policies, the replay.
        .target(name: "KVHybrid", dependencies: ["KVCache"]),
        // Request lifecycle, reservation policies, the output-length predictor protocol.
        .target(name: "KVScheduler", dependencies: ["KVCache", "KVPlan"]),
        // Where the request's path is wired: the serving loop (ServingLoop), the tier leg of a prompt
        // (PrefixPlanner) and the tiers behind the scheduler's protocols (TierPrefixSource, TierSwapSpace).
        .target(name: "KVRuntime", dependencies: ["KVCache", "KVPlan", "KVTiers", "KVScheduler"]),
        // Every trace and dataset reader (streaming gzip, JSON Lines, CSV, one error), and the JSON writer.
        .target(name: "KVData", dependencies: ["KVCache", "CZlib"]),
        // Output-length predictors, training, evaluation and model files; datasets come from KVData.
        .target(name: "KVPrediction", dependencies: ["KVCache", "KVScheduler", "KVData", "CXXHash"]),
        // Verifying harnesses, key-derived payloads and test helpers (shipped in no library a server links).
        .target(name: "KVTestSupport", dependencies: ["KVCache", "KVPlan", "KVTiers", "KVRuntime"]),
        // Cost model, modelled engine, replay drivers.
        .target(name: "KVSimulation", dependencies: ["KVCache", "KVPlan", "KVTiers", "KVScheduler", "KVRuntime",
                                                     "KVTestSupport", "KVData"]),
        // Decode kernels in C (quantized matrix-vector products, attention dot/axpy): AVX2+FMA chosen at
        // run time, portable C elsewhere.
        .target(name: "CKernels"),
        // Chunk reuse at any position: RoPE re-rotation (PIE), the chunk store and the prefill plan.
        .target(name: "KVChunks", dependencies: ["KVCache", "KVPlan", "KVTiers", "CKernels"]),
        // A real CPU engine (GGUF, BPE, llama forward pass) on the paged KV.
        .target(name: "KVReferenceEngine", dependencies: ["KVCache", "KVPlan", "KVTiers", "KVRuntime", "KVData", "COpenBLAS",
                                                          "CKernels", "KVChunks"]),

        // The C ABI: the public header (CKVCache, with the private interface to libkvcache_config.so and its
        // dladdr helper), implemented in Swift with @_cdecl (KVCacheC).
        .target(name: "CKVCache"),
        .target(name: "KVCacheC", dependencies: ["KVCache", "KVPlan", "KVTiers", "KVRuntime", "KVHybrid", "KVMetrics", "KVChunks", "CKVCache"]),
        // How libkvcache_c.so is linked, apart from the code so that tests and benchmarks link KVCacheC as usual.
        .target(name: "KVCacheCLibrary", dependencies: ["KVCacheC"], path: "tools/capi/Library",
                linkerSettings: [.unsafeFlags(sharedLibraryFlags)]),
        // libkvcache_config.so's code: settings and the event publisher behind kvcache_config_library.h.
        .target(name: "KVCacheConfigLibrary", dependencies: ["CKVCache", "KVCache", "KVPlan", "KVTiers", "KVConfig", "KVEvents"]),
        .target(name: "KVCacheConfigLibraryProduct", dependencies: ["KVCacheConfigLibrary"], path: "tools/capi/ConfigLibrary",
                linkerSettings: [.unsafeFlags(configLibraryFlags)]),
        // The same serving cycle through the facade and through the C ABI, side by side.
        .executableTarget(name: "capi-bench", dependencies: ["KVCache", "CKVCache", "KVCacheC"],
                          path: "tools/capi/CABIBench"),

        // Benchmark workloads shared by `kvcache bench` and the Benchmarks package.
        .target(name: "KVBench", dependencies: ["KVCache", "KVPlan", "KVTiers", "KVScheduler", "KVPrediction", "KVChunks",
                                               "KVData", "KVCacheC", "CKVCache", "KVHybrid", "KVEvents", "KVMetrics"]),

        .executableTarget(
            name: "kvcache",
            dependencies: [
                "KVCache", "KVPlan", "KVTiers", "KVScheduler", "KVData", "KVPrediction", "KVSimulation", "KVReferenceEngine",
                "KVBench", "KVHybrid", "KVChunks", "KVEvents", "KVMetrics", "KVConfig", "KVTestSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            path: "tools/kvcache",
            resources: [.copy("Resources")]
        ),

        .testTarget(name: "KVCacheTests", dependencies: ["KVCache"]),
        .testTarget(name: "KVHybridTests", dependencies: ["KVHybrid", "KVData", "KVCache"]),
        .testTarget(name: "KVCacheCTests", dependencies: ["CKVCache", "KVCacheC", "KVCache", "KVPlan", "KVTiers", "KVRuntime",
                                                        "KVCacheConfigLibrary", "KVConfig"]),
        .testTarget(name: "KVConfigTests", dependencies: ["KVConfig", "KVCache", "KVTiers", "KVPlan"]),
        .testTarget(name: "KVPlanTests", dependencies: ["KVPlan", "KVCache"]),
        .testTarget(name: "KVTiersTests", dependencies: ["KVTiers", "KVPlan", "KVTestSupport"]),
        .testTarget(name: "KVRuntimeTests", dependencies: ["KVRuntime", "KVTiers", "KVPlan", "KVTestSupport", "KVScheduler"]),
        .testTarget(name: "KVSchedulerTests", dependencies: ["KVScheduler", "KVPlan"]),
        .testTarget(name: "KVPredictionTests", dependencies: ["KVPrediction", "KVScheduler", "KVData"]),
        // Runs the built `kvcache` on small fixtures and checks the documented `--json` keys.
        .testTarget(name: "KVCacheCLITests", dependencies: ["kvcache", "KVData", "KVEvents", "KVCache"], resources: [.copy("Fixtures")]),
        .testTarget(name: "KVSimulationTests", dependencies: ["KVSimulation", "KVPlan", "KVData", "KVPrediction", "KVRuntime", "KVScheduler"],
                    resources: [.copy("Fixtures")]),
        .testTarget(name: "KVReferenceEngineTests", dependencies: ["KVReferenceEngine", "KVTiers", "KVPlan", "KVRuntime",
                                                                   "KVScheduler", "KVTestSupport", "KVChunks", "KVData"],
                    resources: [.copy("Fixtures")]),
        .testTarget(name: "KVEventsTests", dependencies: ["KVEvents", "KVConfig", "KVMetrics", "KVCache", "KVTiers", "KVTestSupport", "CZmq", "KVCacheC", "CKVCache"]),
        // Publishes the events of a random operation sequence for the Python subscriber test (tools/events).
        .executableTarget(name: "kvcache-events-check", dependencies: ["KVEvents", "KVCache", "KVTiers", "KVPlan"],
                          path: "tools/events/Driver"),
        .testTarget(name: "KVChunksTests", dependencies: ["KVChunks", "KVPlan", "KVCache", "KVTiers", "KVTestSupport", "CKVCache", "KVCacheC"]),
        // The C kernels against exact sums (the quantized ones through the engine's repacking).
        .testTarget(name: "CKernelsTests", dependencies: ["CKernels", "KVCache", "KVReferenceEngine"]),
    ],
    swiftLanguageModes: [.v6]
)
