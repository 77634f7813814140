import ArgumentParser
import Foundation
import KVBench
import KVData
import KVScheduler

/// `kvcache bench scheduler`: the scheduler's CPU cost per step (plan + completion, cache calls
/// included) with a full batch of running sequences, per reservation policy.
struct BenchSchedulerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scheduler",
        abstract: "Scheduler CPU cost per step with N running sequences (SchedulerBench).")

    @Option(help: "Running sequences in the batch.")
    var running = 512
    @Option(help: "Measured steps per policy.")
    var steps = 4000
    @Option(help: "Timed repetitions per policy; the median is reported.")
    var repetitions = 5
    @OptionGroup(title: "Report") var reportOutput: ReportOptions
    var json: Bool { reportOutput.machine }

    func validate() throws {
        guard (1 ... 65_536).contains(running) else { throw ValidationError("--running must be in 1...65536") }
        guard (1 ... 1_000_000).contains(steps) else { throw ValidationError("--steps must be in 1...1000000") }
        guard (1 ... 1_000).contains(repetitions) else { throw ValidationError("--repetitions must be in 1...1000") }
    }

    func run() throws {
        #if DEBUG
        note("warning: a debug build; figures are only meaningful from `swift build -c release`")
        #endif
        var results: [(String, Double)] = []
        for policy in ReservationPolicy.allCases {
            var samples = (0..<repetitions).map { _ in SchedulerBench.run(runningSequences: running, steps: steps, policy: policy) }
            samples.sort()
            results.append((policy.rawValue, samples[samples.count / 2]))
        }
        if json {
            try reportOutput.emit(command: "bench scheduler", fields: [
                ("running_sequences", .int(running)), ("steps", .int(steps)), ("repetitions", .int(repetitions)),
            ], runs: results.map { .object([("policy", .string($0.0)), ("ns_per_step", .double($0.1))]) })
        } else {
            for (k, v) in results {
                print("\(k.padding(toLength: 12, withPad: " ", startingAt: 0)) \(String(format: "%8.1f", v / 1000)) us/step  (\(running) running; thread CPU time in schedule + complete + submit, cache calls included)")
            }
        }
    }
}
