import ArgumentParser
import Foundation
import KVData
import KVEvents

/// `kvcache trace`: traces from other sources.
struct TraceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "trace", abstract: "Make traces from other sources.", subcommands: [Export.self])

    /// `kvcache trace export EVENTS -o trace.jsonl`: a recorded KV-event stream as a Mooncake trace
    /// (`EventTraceExport`).
    struct Export: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Turn a recorded KV-event stream (kvcache replay --record-events, docs/EVENTS.md) into a Mooncake-format trace.",
            discussion: """
                A recording with request frames (kvcache replay --record-events) is exported exactly: every \
                request the cache served, with its lengths and block hashes (hash_ids number the distinct \
                hashes), timestamp = ms after the first; the events cross-check each recorded hit. A recording \
                of a live stream (vLLM's, or kvcache events record) has no request frames: each BlockStored of \
                the medium is then one request (the stored blocks' chain, input_length = blocks x block_size, \
                output_length 0), and requests served entirely from the cache, which publish no event, are not \
                in the export.
                """)

        @Argument(help: "The recording (KVEVREC1 or KVEVREC2, docs/EVENTS.md; gzip accepted).")
        var events: String

        @Option(name: [.short, .customLong("out")], help: "Where to write the Mooncake JSONL trace.")
        var out: String

        @Option(help: "The medium whose BlockStored events are requests (GPU, CPU, DISK...).")
        var medium = "GPU"

        @OptionGroup(title: "Report") var reportOutput: ReportOptions

        func validate() throws {
            do { try OutputFile.checkTarget(out) } catch { throw ValidationError("--out \(error.description)") }
        }

        func run() throws {
            let export = try EventTraceExport.read(path: events, medium: medium)
            do { try OutputFile.write(Array(try export.jsonLines().utf8), to: out) } catch { throw CLIError(error.description) }
            let f = export.figures
            note("\(events): \(f.batches) batches, \(f.storedEvents) stored and \(f.removedEvents) removed events (\(medium))"
                 + (f.exact ? ", \(f.requestFrames) request frames" : "") + "; wrote \(f.requests) requests to \(out)")
            if !f.exact {
                note("no request frames (a live stream's recording): requests served entirely from the cache publish no event and are not in the export; lengths are whole blocks")
            }
            if f.hitMismatches > 0 {
                note("warning: \(f.hitMismatches) of \(f.requestFrames) recorded hits are not the prefix the recorded events say was held")
            }
            if reportOutput.machine {
                let first: JSONValue = f.firstTimestamp.map { .double($0) } ?? .null
                let last: JSONValue = f.lastTimestamp.map { .double($0) } ?? .null
                let run: [(String, JSONValue)] = [
                    ("events_file", .string(events)), ("medium", .string(medium)), ("batches", .int(f.batches)),
                    ("stored_events", .int(f.storedEvents)), ("removed_events", .int(f.removedEvents)),
                    ("requests", .int(f.requests)), ("input_tokens", .int(f.inputTokens)),
                    ("block_tokens", .int(f.blockTokens ?? 0)), ("first_timestamp_s", first), ("last_timestamp_s", last),
                    ("exact", .bool(f.exact)), ("request_frames", .int(f.requestFrames)),
                    ("recorded_hit_tokens", .int(f.hitTokens)), ("hit_mismatches", .int(f.hitMismatches)),
                ]
                try reportOutput.emit(command: "trace export", fields: [("output", .string(out))], runs: [.object(run)])
            }
        }
    }
}
