import Foundation
import Testing

/// Hostile flags and files through the built `kvcache`: each ends with a clean one-line error (exit 1
/// for bad input, 64 for a bad flag) naming the file or the flag, never a trap.
@Suite("kvcache hostile input")
struct CLIHostileInputTests {
    static func folder() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("kvcache-hostile-\(UInt64.random(in: 0...UInt64.max))").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// Runs `kvcache arguments`, expecting `status` and an error line containing `message`.
    static func refuses(_ arguments: [String], status: Int32, _ message: String) throws {
        let r = try CLIJSONTests.run(arguments)
        #expect(r.status == status, "kvcache \(arguments): \(r.err)")
        let first = r.err.split(separator: "\n").first.map(String.init) ?? ""
        #expect(first.hasPrefix("Error: ") && first.contains(message), "kvcache \(arguments): \(r.err)")
        #expect(!r.err.contains("NSCocoaErrorDomain") && !r.err.contains("Fatal error"))
    }

    @Test func hugeTraceNumbersAreBadLines() throws {
        let dir = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let trace = dir + "/t.jsonl"
        try #"{"timestamp": 0, "input_length": 9223372036854775807, "output_length": 1, "hash_ids": [1]}"#
            .write(toFile: trace, atomically: true, encoding: .utf8)
        try Self.refuses(["replay", "--trace", trace], status: 1, "\(trace):1: input_length 9223372036854775807")
        try Self.refuses(["replay", "--trace", trace, "--skip-bad-lines"], status: 1, "\(trace): no requests")
        try Self.refuses(["replay", "--trace", trace, "--mode", "timed"], status: 1, "\(trace):1:")
    }

    @Test func nonFiniteAndHugeReplayFlagsAreRefused() throws {
        for value in ["nan", "inf", "1e30", "-1"] {
            try Self.refuses(["replay", "--mode", "timed", "--kv-gib", value], status: 64, "--kv-gib")
        }
        try Self.refuses(["replay", "--mode", "timed", "--cpu-gib", "inf"], status: 64, "--cpu-gib")
        try Self.refuses(["replay", "--mode", "timed", "--swap-gib", "1e300"], status: 64, "--swap-gib")
        try Self.refuses(["replay", "--mode", "timed", "--rate-scale", "1e-300"], status: 64, "--rate-scale")
        try Self.refuses(["replay", "--mode", "timed", "--think-time-s", "inf"], status: 64, "--think-time-s")
        try Self.refuses(["replay", "--mode", "timed", "--max-running", "9223372036854775807"], status: 64, "--max-running")
        try Self.refuses(["replay", "--capacity-blocks", "100000000000"], status: 64, "--capacity-blocks")
        try Self.refuses(["replay", "--cpu-blocks", "9223372036854775807"], status: 64, "--cpu-blocks")
    }

    @Test func pipesAndStandardInputAreRefusedWithoutHanging() throws {
        let dir = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let fifo = dir + "/fifo"
        #expect(mkfifo(fifo, 0o600) == 0)
        try Self.refuses(["replay", "--trace", fifo], status: 1, "not a regular file")
        // Standard input is read by --trace - only; other inputs still refuse it.
        try Self.refuses(["predict", "eval", "--history", "--data", "-"], status: 1, "standard input is not supported here")
        try Self.refuses(["predict", "eval", "--model", fifo, "--data", fifo], status: 1, "not a regular file")
    }

    @Test func aTraceOnStandardInputReplaysAsTheFileDoes() throws {
        let dir = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let trace = try CLIJSONTests.fixture("mooncake_40.jsonl")
        func runs(_ arguments: [String], input: String?) throws -> [[String: Any]] {
            let r = try CLIJSONTests.run(arguments + ["--json"], input: input)
            #expect(r.status == 0, "\(r.err)")
            let o = try #require(try JSONSerialization.jsonObject(with: r.out) as? [String: Any])
            return try #require(o["runs"] as? [[String: Any]])
        }
        let hits = { (runs: [[String: Any]]) in runs.map { $0["hit_tokens"] as? Int ?? -1 } }
        let sequential = ["replay", "--policy", "lru,belady", "--capacity-blocks", "100,400"]
        let fromFile = try runs(sequential + ["--trace", trace], input: nil)
        #expect(hits(try runs(sequential + ["--trace", "-"], input: trace)) == hits(fromFile))
        // gzip is detected on standard input too.
        let gz = dir + "/t.jsonl.gz"
        let gzip = Process()
        gzip.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        gzip.arguments = ["sh", "-c", "gzip -c \"$0\" > \"$1\"", trace, gz]
        try gzip.run()
        gzip.waitUntilExit()
        #expect(hits(try runs(sequential + ["--trace", "-"], input: gz)) == hits(fromFile))
        let timed = ["replay", "--mode", "timed", "--kv-gib", "0.5", "--compare", "on-demand"]
        #expect(try runs(timed + ["--trace", "-"], input: trace).first?["ttft_p50_s"] as? Double
                == (try runs(timed + ["--trace", trace], input: nil)).first?["ttft_p50_s"] as? Double)
        // A bad line is named on standard input as in a file; a RAGPulse trace needs its folder.
        let bad = try CLIJSONTests.run(["replay", "--trace", "-"], input: try CLIJSONTests.fixture("mooncake_bad.jsonl"))
        #expect(bad.status == 1 && bad.err.contains("-:3: missing field"), "\(bad.err)")
        let rag = try CLIJSONTests.run(["replay", "--trace", "-"], input: try CLIJSONTests.fixture("ragpulse/0_trace_small.jsonl"))
        #expect(rag.status == 1 && rag.err.contains("side files"), "\(rag.err)")
        let empty = dir + "/empty"
        FileManager.default.createFile(atPath: empty, contents: Data())
        let none = try CLIJSONTests.run(["replay", "--trace", "-", "--format", "mooncake"], input: empty)
        #expect(none.status == 1 && none.err.contains("-: no requests"), "\(none.err)")
    }

    @Test func predictorFlagsAndModelFilesAreChecked() throws {
        let dir = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let data = dir + "/chat.jsonl"
        let lines = (0..<30).map { i in
            #"{"id": "c\#(i)", "conversations": [{"from": "human", "value": "write a haiku about \#(i)"}, {"from": "gpt", "value": "\#(String(repeating: "word ", count: i % 7 + 1))"}]}"#
        }
        try lines.joined(separator: "\n").write(toFile: data, atomically: true, encoding: .utf8)
        for flag in [["--learning-rate", "inf"], ["--learning-rate", "nan"], ["--l2", "nan"], ["--epochs", "0"], ["--hash-bits", "30"]] {
            try Self.refuses(["predict", "train", "--data", data, "--out", dir + "/m.kvlp"] + flag, status: 64, flag[0])
        }
        try Self.refuses(["predict", "eval", "--history", "--data", data, "--online-rate", "inf"], status: 64, "--online-rate")
        // --out must not replace a symlink; the link's target is kept.
        let target = dir + "/target"
        try "keep".write(toFile: target, atomically: true, encoding: .utf8)
        #expect(symlink(target, dir + "/link.kvlp") == 0)
        try Self.refuses(["predict", "train", "--data", data, "--out", dir + "/link.kvlp", "--epochs", "1", "--hash-bits", "8"],
                         status: 1, "not a regular file")
        #expect(try String(contentsOfFile: target, encoding: .utf8) == "keep")
        // A garbage model file: one line naming it.
        let bad = dir + "/bad.kvlp"
        try Data([0x4b, 0x56, 0x4c, 0x50, 3, 0, 0, 0] + Array(repeating: 0xff, count: 2500)).write(to: URL(fileURLWithPath: bad))
        try Self.refuses(["predict", "eval", "--model", bad, "--data", data], status: 1, bad)
    }

    /// `replay --format marconi --per-request` writes through `OutputFile`: a symlink (or a device such
    /// as /dev/null, which a run as root once replaced) is refused and left as it was.
    @Test func perRequestOutputDoesNotReplaceALink() throws {
        let dir = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let trace = dir + "/m.jsonl"
        try #"{"session_id":1,"turn_id":0,"ts":0,"num_input_tokens":2,"num_output_tokens":1,"input_tokens":[1,2],"output_tokens":[3]}"#
            .write(toFile: trace, atomically: true, encoding: .utf8)
        let target = dir + "/target"
        try "keep".write(toFile: target, atomically: true, encoding: .utf8)
        #expect(symlink(target, dir + "/link.csv") == 0)
        try Self.refuses(["replay", "--format", "marconi", "--trace", trace, "--model", "hybrid-7b", "--capacity-gb", "1",
                          "--policy", "marconi", "--per-request", dir + "/link.csv"], status: 1, "not a regular file")
        #expect(try String(contentsOfFile: target, encoding: .utf8) == "keep")
    }

    /// A ShareGPT JSON array of more values than `DataLimits.maxJSONArrayValues` (2^23), made cheaply of
    /// one-byte elements (or of nested ones: their inner values count too), is refused as `FILE:LINE`
    /// before anything is decoded, under an 8 GB address space as the fuzz harness runs it.
    @Test func aShareGPTArrayOverTheValueLimitIsRefused() throws {
        let dir = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let limit = 1 << 23
        for (name, element, count) in [("flat", "0", limit + 1), ("nested", "[0]", limit / 2 + 1)] {
            let path = dir + "/\(name).json"
            var text = [UInt8]("\n[".utf8)
            text.reserveCapacity(count * (element.utf8.count + 1) + 4)
            for k in 0..<count {
                if k > 0 { text.append(UInt8(ascii: ",")) }
                text += element.utf8
            }
            text += Array("]\n".utf8)
            try Data(text).write(to: URL(fileURLWithPath: path))
            let shell = Process()
            shell.executableURL = URL(fileURLWithPath: "/bin/bash")
            shell.arguments = ["-c", "ulimit -v 8000000; exec \"$0\" replay --format sharegpt --trace \"$1\"",
                               CLIJSONTests.executable.path, path]
            let err = Pipe()
            shell.standardError = err
            shell.standardOutput = Pipe()
            try shell.run()
            let said = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            shell.waitUntilExit()
            #expect(shell.terminationStatus == 1, "\(name): \(said)")
            #expect(said == "Error: \(path):2: JSON array of more than \(limit) values (the limit; convert it to JSONL)\n", "\(name): \(said)")
        }
    }

    /// A kv-dump folder whose manifest decodes but lies (an unknown format, a block size its shape does
    /// not give, a shape whose block is 2^66 bytes, no blocks) is refused by `bench tiers --kv-dir` in one
    /// line naming the manifest; a block file that is a FIFO is named once.
    @Test func aLyingKVDumpManifestIsNamed() throws {
        let dir = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let base: [String: Any] = ["format": "kvcache-kv-dump-v1", "model": "m", "dtype": "f16",
                                   "layout": "[layer][K|V][token][kvHead][headDim]", "layers": 2, "kvHeads": 2,
                                   "headDim": 16, "blockTokens": 8, "bytesPerBlock": 2048, "promptTokens": 8,
                                   "blocks": [["file": "fifo", "index": 0, "tokens": 8]]]
        let manifest = dir + "/manifest.json"
        for (change, says) in [(["format": "kvcache-kv-dump-v2"], "\(manifest): unknown KV dump format kvcache-kv-dump-v2"),
                               (["bytesPerBlock": 7], "\(manifest): 7 bytes per block, its shape gives 2048"),
                               (["layers": 65536, "kvHeads": 65536, "headDim": 65536], "\(manifest): bad KV dump shape:"),
                               (["blocks": [Any]()], "\(manifest): the KV dump has no blocks"),
                               ([:], "\(dir)/fifo: cannot read: not a regular file")] as [([String: Any], String)] {
            try? FileManager.default.removeItem(atPath: dir + "/fifo")
            #expect(mkfifo(dir + "/fifo", 0o600) == 0)
            try JSONSerialization.data(withJSONObject: base.merging(change) { $1 }).write(to: URL(fileURLWithPath: manifest))
            // After the progress line, one error line naming the file once.
            let r = try CLIJSONTests.run(["bench", "tiers", "--kv-dir", dir, "--blocks", "4", "--repeats", "1"])
            let last = r.err.split(separator: "\n").last.map(String.init) ?? ""
            #expect(r.status == 1 && last.hasPrefix("Error: ") && last.contains(says), "\(r.err)")
            #expect(last.components(separatedBy: dir + "/").count == 2, "one path: \(r.err)")
        }
    }
}
