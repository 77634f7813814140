import Foundation
import KVCache
import KVEvents
import Testing

/// `kvcache events record` against the project's own publisher in this process: the recording is,
/// byte for byte, `KVEVREC1` and the framed payloads the publisher's encoder wrote, in sequence order,
/// whether the batches were kept for replay before the recorder started or published while it ran;
/// a dead endpoint ends at the duration with an empty recording and says so.
@Suite("kvcache events record", .serialized)
struct EventsRecordCLITests {
    /// `n` batches of one stored block each (distinct keys and timestamps) and the recording they make.
    static func batches(_ n: Int, from: Int = 0) -> (events: [[KVEvent]], recording: [UInt8]) {
        let encoder = VLLMEventEncoder()
        var recording = EventRecording.magic
        let events = (from..<from + n).map { i -> [KVEvent] in
            [.blockStored(keys: [BlockKey(lo: UInt64(i) + 1, hi: 7)], parent: nil, blockTokens: 16, tier: .device,
                          tokens: (0..<16).map { UInt32(i * 16 + $0) })]
        }
        for (i, e) in events.enumerated() {
            EventRecording.append(encoder.encode(e, timestamp: Double(from + i), dataParallelRank: 0), to: &recording)
        }
        return (events, recording)
    }

    static func publisher(_ dir: String) throws -> ZmqEventPublisher {
        var config = ZmqEventPublisher.Config()
        config.endpoint = "ipc://\(dir)/pub"
        config.replayEndpoint = "ipc://\(dir)/replay"
        return try ZmqEventPublisher(config)
    }

    @Test func keptBatchesThenLiveOnesAreRecordedByteForByte() throws {
        let dir = try ReportSchemaTests.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let publisher = try Self.publisher(dir)
        defer { publisher.close() }
        let all = Self.batches(50)
        for (i, e) in all.events.prefix(20).enumerated() { publisher.publish(e, timestamp: Double(i)) }

        // 20 kept batches replayed from 0, then 30 published while the recorder runs.
        let out = dir + "/live.kvev"
        let process = Process()
        process.executableURL = CLIJSONTests.executable
        process.arguments = ["events", "record", "--endpoint", "ipc://\(dir)/pub", "--replay-endpoint", "ipc://\(dir)/replay",
                             "--from", "0", "--max-batches", "50", "--duration", "30", "-o", out, "--json"]
        let stdout = Pipe(), stderr = Pipe()
        process.standardOutput = stdout
        process.standardError = stderr
        try process.run()
        Thread.sleep(forTimeInterval: 1)
        for (i, e) in all.events.suffix(30).enumerated() { publisher.publish(e, timestamp: Double(20 + i)) }
        let report = stdout.fileHandleForReading.readDataToEndOfFile()
        let err = String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "\(err)")
        #expect([UInt8](try Data(contentsOf: URL(fileURLWithPath: out))) == all.recording)
        let run = try CLIJSONTests.onlyRun(try #require(try JSONSerialization.jsonObject(with: report) as? [String: Any]))
        #expect(run["batches"] as? Int == 50 && run["first_sequence"] as? Int == 0 && run["last_sequence"] as? Int == 49)
        #expect(run["lost_batches"] as? Int == 0 && run["stored_events"] as? Int == 50)
        #expect((run["replayed_batches"] as? Int ?? 0) >= 20)
        #expect(err.contains("recorded 50 batches"))

        // The recording exports: no request frames, one request per stored block, and it says so.
        let export = try CLIJSONTests.run(["trace", "export", out, "-o", dir + "/t.jsonl", "--json"])
        #expect(export.status == 0 && export.err.contains("no request frames"))
    }

    @Test func aDeadEndpointEndsAtTheDurationWithAnEmptyRecording() throws {
        let dir = try ReportSchemaTests.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let out = dir + "/dead.kvev"
        let start = Date()
        let r = try CLIJSONTests.run(["events", "record", "--endpoint", "ipc://\(dir)/nobody", "--replay-endpoint",
                                      "ipc://\(dir)/nobody-replay", "--from", "0", "--replay-timeout", "0.2",
                                      "--duration", "0.8", "-o", out])
        #expect(Date().timeIntervalSince(start) < 20)
        #expect(r.status == 0 && r.err.contains("no batch from ipc://\(dir)/nobody") && r.err.contains("empty recording"), "\(r.err)")
        #expect(r.err.contains("1 replay requests got no answer"))
        #expect([UInt8](try Data(contentsOf: URL(fileURLWithPath: out))) == EventRecording.magic)
        // Usage errors: --from without a replay socket, a bad endpoint, a bad duration.
        for (arguments, says) in [(["--from", "0"], "--from needs --replay-endpoint"),
                                  (["--duration", "0"], "--duration"), (["--max-batches", "0"], "--max-batches")] {
            let bad = try CLIJSONTests.run(["events", "record", "--endpoint", "ipc://\(dir)/x", "-o", out] + arguments)
            #expect(bad.status == 64 && bad.err.contains(says), "\(bad.err)")
        }
        let badEndpoint = try CLIJSONTests.run(["events", "record", "--endpoint", "localhost:5557", "-o", out])
        #expect(badEndpoint.status == 64 && badEndpoint.err.contains("--endpoint"))
    }
}
