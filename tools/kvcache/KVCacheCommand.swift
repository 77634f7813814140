import ArgumentParser

/// `kvcache`: replays traces through the cache, benchmarks it, and drives the reference engine.
@main
struct KVCacheCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kvcache",
        abstract: "A KV-cache manager for LLM serving: trace replay, benchmarks and tools.",
        // The release of kvcache.h (KVCACHE_VERSION_*); tools/capi/selfcontained.sh checks that they agree.
        version: "0.3.0",
        subcommands: [
            ReplayCommand.self,
            BenchCommand.self,
            PredictCommand.self,
            DiskCommand.self,
            GenerateCommand.self,
            KVDumpCommand.self,
            BlendCommand.self,
            ConfigCommand.self,
            ReportCommand.self,
            TraceCommand.self,
            EventsCommand.self,
        ]
    )
}
