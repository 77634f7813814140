import ArgumentParser
import Foundation
import KVCache
import KVData
import KVSimulation

/// `kvcache replay --format ragpulse`: options of the RAG-trace replay (prefix reuse against chunk reuse).
struct ChunkReplayOptions: ParsableArguments {
    @Flag(help: "RAG traces: reuse every segment seen in an earlier request at any position (with selective recompute), not only leading runs.")
    var chunkReuse = false

    @Option(help: "RAG traces: fraction of each reused chunk's tokens recomputed (CacheBlend), in 0...1.")
    var recomputeRatio: Double = 0.15

    @Option(help: "RAG traces: folder of the side files N_<kind>.jsonl (default: the trace's folder).")
    var sideFiles: String?
}

/// The unbounded RAG replay (`ChunkReuseReplay`): prefix hits and chunk hits of a RAGPulse trace, with the
/// same figures as tools/reference/ragpulse_replay.py.
enum ChunkReplay {
    /// Whether `kvcache replay` hands this trace here: `--format ragpulse`, or a RAGPulse trace detected.
    static func handles(trace: String?, format: TraceFormat?) -> Bool {
        if let format { return format == .ragpulse }
        guard let trace, let detected = try? TraceLoader.detect(ByteSource(path: trace)) else { return false }
        return detected == .ragpulse
    }

    static func run(trace: String?, options o: ChunkReplayOptions, skipBadLines: Bool, report: ReportOptions) throws {
        let json = report.machine
        guard let trace else { throw CLIError("--format ragpulse needs --trace FILE") }
        guard (0 ... 1).contains(o.recomputeRatio) else { throw CLIError("--recompute-ratio must be in 0...1") }
        let loaded: RAGPulse.Trace
        do { loaded = try RAGPulse.load(path: trace, sideFiles: o.sideFiles, skipBadLines: skipBadLines) } catch {
            throw CLIError(error.description)
        }
        let start = KVClock.monotonicNanos()
        let r = ChunkReuseReplay.run(loaded, recomputeRatio: o.recomputeRatio)
        let wall = KVClock.seconds(from: start, to: KVClock.monotonicNanos())
        // Prefix-only reuse ignores chunk hits (and recomputes nothing); --chunk-reuse adds them.
        let reused = r.prefixHitTokens + (o.chunkReuse ? r.chunkHitTokens : 0)
        let saved = o.chunkReuse ? r.savedPrefillTokens : r.prefixHitTokens
        if json {
            try report.emit(command: "replay", fields: [("mode", .string("unbounded"))], runs: [.object([
                ("format", .string("ragpulse")), ("trace", .string(trace)),
                ("chunk_reuse", .bool(o.chunkReuse)), ("recompute_ratio", .double(o.recomputeRatio)),
                ("requests", .int(r.requests)), ("input_tokens", .int(r.inputTokens)),
                ("segment_tokens", .int(r.segmentTokens)), ("template_tokens", .int(r.inputTokens - r.segmentTokens)),
                ("prefix_hit_tokens", .int(r.prefixHitTokens)), ("chunk_hit_tokens", .int(r.chunkHitTokens)),
                ("recomputed_tokens", .int(o.chunkReuse ? r.recomputedTokens : 0)),
                ("prefix_hit_rate", .double(r.prefixHitRate)), ("chunk_reuse_hit_rate", .double(r.chunkReuseHitRate)),
                ("reused_tokens", .int(reused)), ("saved_prefill_tokens", .int(saved)),
                ("saved_prefill_modelled", .bool(true)), ("bad_lines", .int(loaded.trace.skippedLines)),
                ("wall_s", .double(wall)),
            ])])
        } else {
            print("trace \(trace): \(r.requests) requests, \(r.inputTokens) input tokens (\(r.inputTokens - r.segmentTokens) template); unbounded cache")
            print(String(format: "prefix reuse: %d tokens (%.4f of input)", r.prefixHitTokens, r.prefixHitRate))
            print(String(format: "chunk reuse:  %d more tokens, %.4f of input with the prefix hits", r.chunkHitTokens, r.chunkReuseHitRate))
            if o.chunkReuse {
                print(String(format: "recomputed at ratio %.2f: %d tokens; saved prefill (modelled, net): %d tokens",
                             o.recomputeRatio, r.recomputedTokens, saved))
            }
        }
    }
}
