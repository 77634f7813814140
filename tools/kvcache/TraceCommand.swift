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
                Each BlockStored of the medium is one request: the stored blocks' chain (parents from earlier \
                events), hash_ids numbering the distinct hashes, input_length = blocks x block_size, timestamp = \
                the batch's time (ms after the first), output_length 0. Requests served entirely from the cache \
                publish no event and are not in the export.
                """)

        @Argument(help: "The recording (KVEVREC1 frames of KVEventBatch msgpack; gzip accepted).")
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
            let bytes: [UInt8]
            do { bytes = try ByteSource.readAll(path: events) } catch { throw CLIError(error.description) }
            let export: EventTraceExport
            do { export = try EventTraceExport.read(bytes, medium: medium) } catch { throw CLIError("\(events): \(error)") }
            do { try OutputFile.write(Array(try export.jsonLines().utf8), to: out) } catch { throw CLIError(error.description) }
            let f = export.figures
            note("\(events): \(f.batches) batches, \(f.storedEvents) stored and \(f.removedEvents) removed events (\(medium)); wrote \(f.requests) requests to \(out)")
            if reportOutput.machine {
                let first: JSONValue = f.firstTimestamp.map { .double($0) } ?? .null
                let last: JSONValue = f.lastTimestamp.map { .double($0) } ?? .null
                let run: [(String, JSONValue)] = [
                    ("events_file", .string(events)), ("medium", .string(medium)), ("batches", .int(f.batches)),
                    ("stored_events", .int(f.storedEvents)), ("removed_events", .int(f.removedEvents)),
                    ("requests", .int(f.requests)), ("input_tokens", .int(f.inputTokens)),
                    ("block_tokens", .int(f.blockTokens ?? 0)), ("first_timestamp_s", first), ("last_timestamp_s", last),
                ]
                try reportOutput.emit(command: "trace export", fields: [("output", .string(out))], runs: [.object(run)])
            }
        }
    }
}
