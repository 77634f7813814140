// swift-tools-version:6.1
import PackageDescription

// Benchmarks live in their own package so the library builds without the benchmark tooling.
// Run: cd Benchmarks && swift package benchmark   (release build; needs no root)
let package = Package(
    name: "swift-kvcache-benchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "swift-kvcache", path: "../"),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "CoreBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "KVBench", package: "swift-kvcache"),
            ],
            path: "Benchmarks/CoreBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ],
    swiftLanguageModes: [.v6]
)
