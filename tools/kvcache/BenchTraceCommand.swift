import ArgumentParser
import Foundation
import KVBench
import KVData

/// `kvcache bench trace`: a trace's requests through the C ABI one at a time at serving block sizes.
struct BenchTraceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "trace",
        abstract: "A trace's requests through the C ABI, one at a time: ns per block of each call.",
        discussion: """
            Each request: add_sequence (hashing), lookup, allocate and commit of the uncached tokens, \
            free. Token ids are synthesized per hash id (equal ids, equal tokens). Without --trace, \
            the embedded Mooncake sample.
            """)

    @Option(help: "Mooncake-format trace (JSONL, gzip or not). Default: the embedded sample.")
    var trace: String?
    @Option(help: "Tokens per cache block.")
    var blockTokens = 16
    @Option(help: "Pool sizes in blocks, comma-separated; one replay each.")
    var poolBlocks = "32000,320000,1600000"
    @Option(help: "Replays per pool size; the one with the median serve time is reported.")
    var repetitions = 3
    @OptionGroup(title: "Report") var reportOutput: ReportOptions
    var json: Bool { reportOutput.machine }

    func validate() throws {
        guard (1 ... 1_024).contains(blockTokens) else { throw ValidationError("--block-tokens must be in 1...1024") }
        guard (1 ... 100).contains(repetitions) else { throw ValidationError("--repetitions must be in 1...100") }
        _ = try pools()
    }

    private func pools() throws -> [Int] {
        let sizes = poolBlocks.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !sizes.isEmpty, sizes.count <= 16, sizes.allSatisfy({ $0 != nil && (1 ... 16_000_000).contains($0!) }) else {
            throw ValidationError("--pool-blocks must be 1 to 16 comma-separated sizes in 1...16000000")
        }
        return sizes.map { $0! }
    }

    func run() throws {
        #if DEBUG
        note("warning: a debug build; figures are only meaningful from `swift build -c release`")
        #endif
        let label = trace ?? EmbeddedTrace.label
        let loaded: LoadedTrace
        if let trace {
            do { loaded = try TraceLoader.load(path: trace, format: .mooncake) } catch { throw CLIError(error.description) }
        } else {
            loaded = try EmbeddedTrace.load()
        }
        let bench = TraceControlPlane(requests: loaded.requests, blockTokens: blockTokens, poolBlocks: 1)
        var figures: [TraceControlPlane.Figures] = []
        for pool in try pools() {
            do { figures.append(try bench.measure(poolBlocks: pool, repetitions: repetitions)) } catch { throw CLIError("\(error)") }
        }
        if json {
            try reportOutput.emit(command: "bench trace", object: .object([
                ("trace", .string(label)), ("block_tokens", .int(blockTokens)), ("repetitions", .int(repetitions)),
                ("runs", .array(figures.map { f in
                    .object([("pool_blocks", .int(f.poolBlocks)), ("requests", .int(f.requests)),
                             ("prompt_blocks", .int(f.promptBlocks)), ("prompt_tokens", .int(f.promptTokens)),
                             ("hit_tokens", .int(f.hitTokens)), ("evicted_blocks", .int(f.evictedBlocks)),
                             ("add_ns_per_block", .double(f.addNanosPerBlock)),
                             ("lookup_ns_per_block", .double(f.lookupNanosPerBlock)),
                             ("allocate_ns_per_block", .double(f.allocateNanosPerBlock)),
                             ("commit_ns_per_block", .double(f.commitNanosPerBlock)),
                             ("free_ns_per_block", .double(f.freeNanosPerBlock)),
                             ("serve_ns_per_block", .double(f.serveNanosPerBlock))])
                }))]))
        } else {
            print("trace \(label): \(figures.first?.requests ?? 0) requests, \(figures.first?.promptBlocks ?? 0) blocks of \(blockTokens) tokens")
            print("pool_blocks  hit_tokens   evicted  add(hash)  lookup  allocate  commit   free  lookup+alloc+commit+free  (ns/block)")
            for f in figures {
                print(String(format: "%11d %11d %9d %10.1f %7.1f %9.1f %7.1f %6.1f %25.1f", f.poolBlocks, f.hitTokens,
                             f.evictedBlocks, f.addNanosPerBlock, f.lookupNanosPerBlock, f.allocateNanosPerBlock,
                             f.commitNanosPerBlock, f.freeNanosPerBlock, f.serveNanosPerBlock))
            }
        }
    }
}
