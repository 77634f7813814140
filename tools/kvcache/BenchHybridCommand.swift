import ArgumentParser
import Foundation
import KVBench
import KVData
import KVHybrid

/// `kvcache bench hybrid`: lookup and insert per request of the hybrid prefix cache's radix-tree policies.
struct BenchHybridCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hybrid",
        abstract: "Hybrid (attention + SSM) prefix cache: lookup and insert (with eviction) per request, per policy.")

    @Option(help: "Requests per timed run (shared system prompts of 1k-4k tokens plus a distinct turn).")
    var requests = 512
    @Option(help: "Timed repetitions of each; the median is reported.")
    var repetitions = 15
    @Option(help: "Policies to measure (sglang+, marconi-sim, marconi, adaptive).")
    var policy = "sglang+,marconi,adaptive"
    @OptionGroup(title: "Report") var reportOutput: ReportOptions
    var json: Bool { reportOutput.machine }

    func validate() throws {
        guard (1 ... 100_000).contains(requests) else { throw ValidationError("--requests must be in 1...100000") }
        guard (1 ... 1_000).contains(repetitions) else { throw ValidationError("--repetitions must be in 1...1000") }
        _ = try policies()
    }

    func policies() throws -> [HybridPolicy] {
        try HybridReplayCommand.policies(policy).map { p in
            guard p != .vllmPlus else { throw ValidationError("vllm+ is a block cache; bench hybrid measures the radix tree") }
            return p
        }
    }

    func run() throws {
        #if DEBUG
        note("warning: a debug build; figures are only meaningful from `swift build -c release`")
        #endif
        let figures = try policies().map { try HybridFigures.measure(policy: $0, repetitions: repetitions, requests: requests) }
        if json {
            try reportOutput.emit(command: "bench hybrid", object: .object([
                ("requests", .int(requests)), ("repetitions", .int(repetitions)),
                ("capacity_bytes", .int(Int(HybridFigures.defaultCapacity))),
                ("policies", .array(figures.map { f in
                    .object([("policy", .string(f.policy.rawValue)),
                             ("lookup_us_per_request", .double(f.lookupSecondsPerRequest * 1e6)),
                             ("insert_us_per_request", .double(f.insertSecondsPerRequest * 1e6))])
                })),
            ]), runsKey: "policies")
        } else {
            for f in figures {
                print(f.policy.rawValue.padding(toLength: 12, withPad: " ", startingAt: 0)
                      + String(format: "lookup %.2f us/request  insert %.2f us/request (evicting)",
                               f.lookupSecondsPerRequest * 1e6, f.insertSecondsPerRequest * 1e6))
            }
        }
    }
}
