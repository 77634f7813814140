import ArgumentParser
import Foundation
import Glibc
import KVCache
import KVData
import KVEvents
import Synchronization

/// `kvcache events`: KV-event streams on the wire.
struct EventsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "events", abstract: "Record KV-event streams (vLLM's protocol, docs/EVENTS.md).", subcommands: [Record.self])

    /// Set by SIGINT or SIGTERM: the recording stops and is written.
    static let interrupted = Atomic<Bool>(false)

    /// `kvcache events record --endpoint tcp://HOST:PORT --out FILE`: a live publisher's batches, in
    /// sequence order with the gaps recovered by replay (`ZmqEventSubscriber`), as a version 1
    /// `EventRecording` (the payloads exactly as received). Ends at `--max-batches`, at `--duration`, or
    /// on Ctrl-C, and writes what it has then.
    struct Record: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Subscribe to a KV-event publisher (ours or vLLM's) and record its batches (KVEVREC1).",
            discussion: """
                Batches are written in sequence order, payloads as received. With --replay-endpoint, a gap in \
                the sequence numbers is recovered from the publisher's replay socket (and --from asks it for the \
                batches it still keeps from that number first); what it no longer has is counted as lost. Stops \
                after --max-batches batches, after --duration seconds, or on Ctrl-C, then writes the recording. \
                A stream has no request frames: `kvcache trace export` of the recording says what it cannot show.
                """)

        @Option(help: "The publisher's PUB address (tcp://HOST:PORT, ipc://PATH).")
        var endpoint: String

        @Option(help: "The publisher's replay (ROUTER) address, to recover dropped batches.")
        var replayEndpoint: String?

        @Option(help: "Record messages whose topic starts with this (default: every topic).")
        var topic = ""

        @Option(name: [.short, .customLong("out")], help: "Where to write the recording.")
        var out: String

        @Option(help: "Stop after this many batches.")
        var maxBatches: Int?

        @Option(help: "Stop after this many seconds.")
        var duration: Double = 60

        @Option(name: .customLong("from"), help: "With --replay-endpoint: first replay every batch the publisher keeps from this sequence number (0: all).")
        var fromSequence: Int64?

        @Option(help: "Seconds to wait for a replay's answer.")
        var replayTimeout: Double = 2

        @OptionGroup(title: "Report") var reportOutput: ReportOptions

        func validate() throws {
            do { try OutputFile.checkTarget(out) } catch { throw ValidationError("--out \(error.description)") }
            guard duration.isFinite, duration > 0, duration <= 31_536_000 else {
                throw ValidationError("--duration must be in (0, 31536000] seconds, got \(duration)")
            }
            if let maxBatches, maxBatches < 1 { throw ValidationError("--max-batches must be at least 1, got \(maxBatches)") }
            if let fromSequence {
                guard replayEndpoint != nil else { throw ValidationError("--from needs --replay-endpoint") }
                guard fromSequence >= 0 else { throw ValidationError("--from must be >= 0, got \(fromSequence)") }
            }
            guard replayTimeout.isFinite, replayTimeout > 0, replayTimeout <= 3600 else {
                throw ValidationError("--replay-timeout must be in (0, 3600] seconds, got \(replayTimeout)")
            }
            for (name, value) in [("--endpoint", endpoint), ("--replay-endpoint", replayEndpoint)] {
                guard let value else { continue }
                guard ["tcp://", "ipc://", "inproc://"].contains(where: { value.hasPrefix($0) && value.count > $0.count }) else {
                    throw ValidationError("\(name) must be tcp://HOST:PORT or ipc://PATH, got '\(value)'")
                }
            }
        }

        func run() throws {
            var config = ZmqEventSubscriber.Config(endpoint: endpoint)
            config.replayEndpoint = replayEndpoint
            config.topic = topic
            config.startSequence = fromSequence
            config.replayTimeout = replayTimeout
            let subscriber: ZmqEventSubscriber
            do { subscriber = try ZmqEventSubscriber(config) } catch { throw CLIError(error.description) }
            defer { subscriber.close() }
            EventsCommand.interrupted.store(false, ordering: .relaxed)
            let handler: @convention(c) (Int32) -> Void = { _ in EventsCommand.interrupted.store(true, ordering: .relaxed) }
            signal(SIGINT, handler)
            signal(SIGTERM, handler)
            defer { signal(SIGINT, SIG_DFL); signal(SIGTERM, SIG_DFL) }

            let start = KVClock.monotonicNanos()
            let end = start &+ UInt64(duration * 1e9)
            var bytes = EventRecording.magic
            var batches = 0, stored = 0, removed = 0, undecodable = 0
            var first: Int64?, last: Int64?
            var why = "the duration (\(duration) s) ran out"
            while batches < (maxBatches ?? Int.max) {
                if EventsCommand.interrupted.load(ordering: .relaxed) { why = "interrupted"; break }
                let now = KVClock.monotonicNanos()
                guard now < end else { break }
                // Short waits, so that Ctrl-C is seen within a tenth of a second.
                guard let batch = subscriber.next(deadline: min(end, now &+ 100_000_000)) else { continue }
                batch.payload.withUnsafeBytes { EventRecording.append($0, to: &bytes) }
                batches += 1
                first = first ?? batch.sequence
                last = batch.sequence
                if let decoded = try? VLLMEventDecoder.decode(batch.payload[...]) {
                    for e in decoded.events {
                        if case .stored = e { stored += 1 } else if case .removed = e { removed += 1 }
                    }
                } else {
                    undecodable += 1
                }
            }
            if batches == maxBatches { why = "--max-batches \(batches) reached" }
            let seconds = KVClock.seconds(from: start, to: KVClock.monotonicNanos())
            do { try OutputFile.write(bytes, to: out) } catch { throw CLIError(error.description) }
            let f = subscriber.figures
            if batches == 0 {
                note("no batch from \(endpoint) in \(String(format: "%.1f", seconds)) s (\(why)): nothing publishes there, or nothing happened; wrote an empty recording to \(out)")
            } else {
                note("recorded \(batches) batches (\(f.live) live, \(f.replayed) replayed; sequence \(first!)...\(last!)), "
                     + "\(stored) stored and \(removed) removed events in \(String(format: "%.1f", seconds)) s (\(why)) to \(out)")
            }
            if f.lost > 0 {
                note("warning: \(f.lost) batches were missed and not recovered"
                     + (replayEndpoint == nil ? " (no --replay-endpoint)" : " (the publisher no longer kept them)"))
            }
            if f.unansweredReplays > 0 { note("warning: \(f.unansweredReplays) replay requests got no answer within \(replayTimeout) s") }
            if undecodable > 0 { note("warning: \(undecodable) batches are not KVEventBatch msgpack (kept as received)") }
            if f.malformed > 0 { note("warning: \(f.malformed) messages were not [topic, seq, payload] and were skipped") }
            guard reportOutput.machine else { return }
            let run: [(String, JSONValue)] = [
                ("endpoint", .string(endpoint)), ("replay_endpoint", replayEndpoint.map { .string($0) } ?? .null),
                ("batches", .int(batches)), ("live_batches", .int(f.live)), ("replayed_batches", .int(f.replayed)),
                ("lost_batches", .int(Int(f.lost))), ("duplicate_batches", .int(f.duplicates)),
                ("malformed_messages", .int(f.malformed)), ("undecodable_batches", .int(undecodable)),
                ("replay_requests", .int(f.replayRequests)), ("unanswered_replays", .int(f.unansweredReplays)),
                ("stored_events", .int(stored)), ("removed_events", .int(removed)),
                ("first_sequence", first.map { .int(Int($0)) } ?? .null), ("last_sequence", last.map { .int(Int($0)) } ?? .null),
                ("wall_s", .double(seconds)), ("stopped_by", .string(why)),
            ]
            try reportOutput.emit(command: "events record", fields: [("output", .string(out))], runs: [.object(run)])
        }
    }
}
