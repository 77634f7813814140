import ArgumentParser
import Foundation
import KVBench
import KVData

/// `kvcache bench`: measures the hot paths in this build (use a release build for real figures).
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure the cache's hot paths (medians of repeated runs).",
        subcommands: [BenchCoreCommand.self, BenchTiersCommand.self, BenchSchedulerCommand.self, BenchChunksCommand.self,
                      BenchTraceCommand.self, BenchHybridCommand.self],
        defaultSubcommand: BenchCoreCommand.self
    )
}

/// `kvcache bench core`: hashing, lookup, allocate+free, insert and eviction.
struct BenchCoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "core",
        abstract: "Block hashing, prefix lookup, allocate+free, insert and eviction (16-token blocks).")

    @Option(help: "Timed repetitions per workload; the median is reported.")
    var repetitions: Int = 15

    @Flag(help: "A control run: the serving cycle's \"on\" side runs with events and metrics off too, so observed_over_off shows the bench's own noise (1.0 is exact).")
    var control = false

    @OptionGroup(title: "Report") var reportOutput: ReportOptions
    var json: Bool { reportOutput.machine }

    func validate() throws {
        guard (1 ... 1_000).contains(repetitions) else { throw ValidationError("--repetitions must be in 1...1000") }
    }

    func run() throws {
        #if DEBUG
        note("warning: a debug build; figures are only meaningful from `swift build -c release`")
        #endif
        let f = try CoreFigures.measure(repetitions: repetitions)
        if control { note("control run: both sides of the serving cycle have events and metrics off") }
        let o = try ObservedServingFigures.measure(repetitions: repetitions, control: control)
        // What the "observed" side of the serving cycle runs with.
        let observed = control ? "events and metrics off too (control)" : "ZMQ events and metrics on"
        let figures: [(String, Double, String)] = [
            ("hash_tokens_per_s", f.hashTokensPerSecond, "tokens/s  chained XXH3-128 block keys, one core"),
            ("lookup_ns_per_block", f.lookupNanosPerBlock, "ns/block  lookup of a cached 32k-token prompt, hashing included"),
            ("alloc_free_ns_per_block", f.allocFreeNanosPerBlock, "ns/block  BlockPool allocate + free"),
            ("insert_ns_per_block", f.insertNanosPerBlock, "ns/block  commit of new blocks into the prefix index"),
            ("evict_ns_per_block", f.evictNanosPerBlock, "ns/block  allocation that evicts unheld cached leaves"),
            ("serve_ns_per_block", o.offNanosPerBlock, "ns/block  add+lookup+allocate+commit+free, serving thread CPU, events and metrics off"),
            ("serve_observed_ns_per_block", o.onNanosPerBlock, "ns/block  the same with \(observed), alternated"),
            ("observed_over_off", o.ratio, "x         on / off, serving thread CPU, median of the pairs (1.0: no cost)"),
            ("serve_wall_ns_per_block", o.offWallNanosPerBlock, "ns/block  events and metrics off, wall time"),
            ("serve_observed_wall_ns_per_block", o.onWallNanosPerBlock, "ns/block  the same with \(observed), wall time"),
            ("observed_over_off_wall", o.wallRatio, "x         on / off, wall time, median of the pairs"),
            ("publisher_ns_per_block", o.publisherNanosPerBlock, "ns/block  the publisher thread's CPU (msgpack encoding, PUB send, replay ring)"),
        ]
        if json {
            try reportOutput.emit(command: "bench core", object: .object([("repetitions", .int(repetitions)), ("block_tokens", .int(16)), ("prompt_tokens", .int(32_768)),
                                                                             ("control", .bool(control))]
                                     + figures.map { ($0.0, .double($0.1)) }
                                     + [("evict_ns_per_block_by_policy", .object(f.evictNanosPerBlockByPolicy.map { ($0.policy, .double($0.nanos)) }))]))
        } else {
            for (k, v, what) in figures {
                let format = v > 1e5 ? "%.3e" : what.hasPrefix("x ") ? "%.3f" : "%.1f"
                print("\(k.padding(toLength: 24, withPad: " ", startingAt: 0)) \(String(format: format, v))  \(what)")
            }
            print("evict ns/block by policy (the same workload): "
                  + f.evictNanosPerBlockByPolicy.map { "\($0.policy) \(String(format: "%.0f", $0.nanos))" }.joined(separator: ", "))
        }
    }
}
