import ArgumentParser
import Foundation
import KVBench
import KVData

/// `kvcache bench chunks`: RoPE re-rotation of a reused chunk's keys against memcpy of the same bytes, and
/// the chunk store's lookup and plan building in ns per chunk.
struct BenchChunksCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chunks",
        abstract: "RoPE re-rotation (PIE) of cached keys against memcpy of the same bytes, in one run; chunk lookup and plan building in ns per chunk.")

    @Option(help: "Chunk tokens (keys of 8 layers x 8 KV heads x head dim 128, fp32).")
    var tokens = 512
    @Option(help: "Timed repetitions of each; the median is reported.")
    var repetitions = 15
    @OptionGroup(title: "Report") var reportOutput: ReportOptions
    var json: Bool { reportOutput.machine }

    func validate() throws {
        // 32 KiB of keys per token: 8,192 tokens are 256 MiB per copy.
        guard (1 ... 8_192).contains(tokens) else { throw ValidationError("--tokens must be in 1...8192") }
        guard (1 ... 1_000).contains(repetitions) else { throw ValidationError("--repetitions must be in 1...1000") }
    }

    func run() throws {
        #if DEBUG
        note("warning: a debug build; figures are only meaningful from `swift build -c release`")
        #endif
        let figures = try [.adjacentPairs, .halfSplit].map {
            try RopeRotationFigures.measure(layout: $0, tokens: tokens, repetitions: repetitions)
        }
        let plans = try ChunkPlanFigures.measure(repetitions: repetitions)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("kvcache-bench-chunks-\(UUID().uuidString)").path
        do { try OutputFolder.create(dir) } catch { throw CLIError(error.description) }
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let fetch = try ChunkFetchFigures.measure(directory: dir)
        if json {
            try reportOutput.emit(command: "bench chunks", object: .object([("tokens", .int(tokens)), ("repetitions", .int(repetitions)),
                                      ("lookup_ns_per_chunk", .double(plans.lookupNanosPerChunk)),
                                      ("plan_ns_per_chunk", .double(plans.planNanosPerChunk)),
                                      ("plan_c_abi_ns_per_chunk", .double(plans.planCAPINanosPerChunk)),
                                      ("fetch", .object([("chunk_bytes", .int(fetch.chunkBytes)), ("from_device", .int(fetch.fromDevice)),
                                                         ("from_host", .int(fetch.fromHost)), ("from_disk", .int(fetch.fromDisk)),
                                                         ("missing", .int(fetch.missing)), ("host_gb_per_s", .double(fetch.hostGBps)),
                                                         ("disk_gb_per_s", .double(fetch.diskGBps)), ("mismatches", .int(fetch.mismatches))])),
                                      ("bytes", .int(figures[0].bytes)),
                                      ("rope", .array(figures.map { f in
                                          .object([("layout", .string(f.layout.rawValue)),
                                                   ("rotate_gb_per_s", .double(f.rotateBytesPerSecond / 1e9)),
                                                   ("memcpy_gb_per_s", .double(f.copyBytesPerSecond / 1e9)),
                                                   ("ratio", .double(f.ratio))])
                                      }))]), runsKey: "rope")
        } else {
            print("keys: \(figures[0].bytes) bytes (\(tokens) tokens x 8 layers x 8 KV heads x 128 dims, fp32)")
            for f in figures {
                print("\(f.layout.rawValue.padding(toLength: 14, withPad: " ", startingAt: 0)) rotate "
                      + String(format: "%.2f GB/s  memcpy %.2f GB/s  ratio %.2f", f.rotateBytesPerSecond / 1e9,
                               f.copyBytesPerSecond / 1e9, f.ratio))
            }
            print("chunk store of 4,096 chunks of 256 tokens; prompts of 8 reused chunks, HKVD at 0.15")
            print(String(format: "lookup %.1f ns/chunk  plan (draft+acquire+release) %.1f ns/chunk  plan through the C ABI (plan+commit) %.1f ns/chunk",
                         plans.lookupNanosPerChunk, plans.planNanosPerChunk, plans.planCAPINanosPerChunk))
            print(String(format: "fetch of spilled %d-byte chunks (measured): %d from device, %d from host at %.2f GB/s, %d from disk at %.2f GB/s, %d missing, %d with bytes differing",
                         fetch.chunkBytes, fetch.fromDevice, fetch.fromHost, fetch.hostGBps, fetch.fromDisk, fetch.diskGBps, fetch.missing, fetch.mismatches))
        }
    }
}
