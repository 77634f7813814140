import Foundation
import Testing

/// Every subcommand's `--json` report validated against docs/report.schema.json (by
/// tools/report/validate.py, with python3's jsonschema), and the report options: `--output` writes what
/// `--json` prints and refuses a symlink, `--csv` has one row per run. The model-backed subcommands
/// (generate, kv-dump, blend) join when the shared model is present.
@Suite("kvcache reports: one schema")
struct ReportSchemaTests {
    static let root = BlendCLITests.root
    static let model = BlendCLITests.model

    /// Whether the validator can run: python3 with jsonschema (tools/install-deps.sh installs it). Under
    /// `CI=true` the test runs regardless, and fails when it is missing.
    static var validatorAvailable: Bool {
        if ProcessInfo.processInfo.environment["CI"] != nil { return true }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", "import jsonschema"]
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return false }
        p.waitUntilExit()
        return p.terminationStatus == 0
    }

    static func temporaryFolder() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("kvcache-reports-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    /// A small ShareGPT file for the text predictors (80 one-turn conversations, seeded).
    static func writeShareGPT(to path: String) throws {
        let words = ["the", "cache", "block", "prefix", "token", "model", "memory", "serve", "request", "reuse", "tier"]
        var state: UInt64 = 7
        func next(_ n: Int) -> Int { state = state &* 6364136223846793005 &+ 1442695040888963407; return Int(state >> 33) % n }
        var conversations: [[String: Any]] = []
        for i in 0..<80 {
            let q = (0..<(3 + next(28))).map { _ in words[next(words.count)] }.joined(separator: " ")
            let a = (0..<(1 + next(200))).map { _ in words[next(words.count)] }.joined(separator: " ")
            conversations.append(["id": "\(i)", "conversations": [["from": "human", "value": q], ["from": "gpt", "value": a]]])
        }
        try JSONSerialization.data(withJSONObject: conversations).write(to: URL(fileURLWithPath: path))
    }

    @Test(.enabled(if: validatorAvailable, "python3's jsonschema is missing (tools/install-deps.sh installs it)"))
    func everySubcommandsReportMatchesTheSchema() throws {
        let dir = try Self.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let mooncake = try CLIJSONTests.fixture("mooncake_40.jsonl")
        let ragpulse = try CLIJSONTests.fixture("ragpulse/0_trace_small.jsonl")
        let marconi = try CLIJSONTests.fixture("marconi_12.jsonl")
        let sharegpt = dir + "/sharegpt.json"
        try Self.writeShareGPT(to: sharegpt)
        try "capacity_blocks: 64\npolicy: probation\n".write(toFile: dir + "/kv.yaml", atomically: true, encoding: .utf8)
        var cases: [(String, [String])] = [
            ("replay-sequential", ["replay", "--range", "0.8:1", "--policy", "lru,belady", "--capacity-blocks", "300,3000"]),
            ("replay-tiered", ["replay", "--range", "0.9:1", "--capacity-blocks", "300", "--cpu-blocks", "600", "--disk-blocks", "600"]),
            ("replay-timed", ["replay", "--mode", "timed", "--trace", mooncake, "--kv-gib", "0.5,1", "--cpu-gib", "0,1",
                              "--compare", "on-demand,predicted"]),
            ("replay-unbounded", ["replay", "--format", "ragpulse", "--trace", ragpulse, "--chunk-reuse"]),
            ("replay-ragpulse-finite", ["replay", "--format", "ragpulse", "--trace", ragpulse, "--capacity-tokens", "10%",
                                        "--policy", "lru,pgdsf"]),
            ("replay-timed-pensieve", ["replay", "--mode", "timed", "--pensieve", "--trace", mooncake, "--kv-gib", "0.5",
                                       "--cpu-gib", "0,1", "--policy", "lru,pensieve"]),
            ("replay-timed-eviction", ["replay", "--mode", "timed", "--trace", mooncake, "--kv-gib", "0.5",
                                       "--policy", "lru,probation", "--compare", "on-demand"]),
            ("config", ["config", "--file", dir + "/kv.yaml"]),
            ("replay-knowledge-tree", ["replay", "--format", "ragpulse", "--trace", ragpulse, "--knowledge-tree", "--capacity-blocks", "4,16"]),
            ("replay-pensieve", ["replay", "--pensieve", "--trace", mooncake, "--capacity-blocks", "64,256"]),
            ("replay-hybrid", ["replay", "--format", "marconi", "--model", "hybrid-7b", "--trace", marconi]),
            ("bench-core", ["bench", "core", "--repetitions", "1"]),
            ("bench-scheduler", ["bench", "scheduler", "--running", "16", "--steps", "50", "--repetitions", "1"]),
            ("bench-chunks", ["bench", "chunks", "--tokens", "64", "--repetitions", "1"]),
            ("bench-hybrid", ["bench", "hybrid", "--requests", "20", "--repetitions", "1"]),
            ("bench-trace", ["bench", "trace", "--trace", mooncake, "--block-tokens", "16", "--pool-blocks", "100000,400", "--repetitions", "1"]),
            ("bench-tiers", ["bench", "tiers", "--blocks", "4", "--repeats", "1", "--disk-dir", dir + "/tiers"]),
            ("predict-eval", ["predict", "eval", "--history", "--data", mooncake]),
            ("predict-bench", ["predict", "bench"]),
            ("predict-train", ["predict", "train", "--data", sharegpt, "--epochs", "1", "--out", dir + "/m.kvlp"]),
            ("predict-compare", ["predict", "compare", "--data", sharegpt, "--epochs", "1", "--rounds", "5"]),
            ("predict-validate", ["predict", "validate", "--data", sharegpt, "--epochs", "1", "--folds", "hash", "--k", "2"]),
            ("disk-stress", ["disk", "stress", dir + "/disk", "--seconds", "0.3", "--block-kib", "16", "--capacity-mib", "4"]),
            ("disk-fsck", ["disk", "fsck", dir + "/disk"]),
            ("record-events", ["replay", "--range", "0.9:1", "--capacity-blocks", "300", "--record-events", dir + "/events.kvev"]),
            ("trace-export", ["trace", "export", dir + "/events.kvev", "-o", dir + "/exported.jsonl"]),
            ("events-record", ["events", "record", "--endpoint", "ipc://\(dir)/nobody", "--duration", "0.3", "-o", dir + "/live.kvev"]),
        ]
        var modelBacked = ["generate", "kv-dump", "blend"]
        if FileManager.default.fileExists(atPath: Self.model) {
            try Data("Why cache KV?".utf8).write(to: URL(fileURLWithPath: dir + "/prompt.txt"))
            cases += [
                ("generate", ["generate", "--model", Self.model, "--prompt", "Why cache KV?", "--max-tokens", "4"]),
                ("kv-dump", ["kv-dump", "--model", Self.model, "--prompt-file", dir + "/prompt.txt", "--out", dir + "/dump"]),
            ]
            modelBacked.removeAll { $0 != "blend" }
            if FileManager.default.fileExists(atPath: BlendCLITests.data) {
                cases.append(("blend", ["blend", "--model", Self.model, "--data", BlendCLITests.data, "--limit", "1", "--max-tokens", "1",
                                        "--passages", "3", "--passage-tokens", "40", "--ratio", "0.3"]))
                modelBacked = []
            }
        }
        if !modelBacked.isEmpty { print("\(modelBacked.joined(separator: ", ")) left out: the shared model or data set is absent") }
        // Every subcommand that takes --json (from the tool's own description of its commands) is among the cases.
        let covered = Set(cases.map { _, arguments in Self.subcommand(of: arguments) })
        let missing = try Self.subcommandsWithJSON().subtracting(covered).subtracting(modelBacked)
        #expect(missing.isEmpty, "subcommands with --json that no case runs: \(missing.sorted())")
        var files: [String] = []
        for (i, (name, arguments)) in cases.enumerated() {
            let file = "\(dir)/\(name).json"
            // Half the cases print with --json, half write with --output: the same report either way.
            if i % 2 == 0 {
                let r = try CLIJSONTests.run(arguments + ["--json"])
                #expect(r.status == 0, "\(name): \(r.err)")
                try r.out.write(to: URL(fileURLWithPath: file))
            } else {
                let r = try CLIJSONTests.run(arguments + ["--output", file])
                #expect(r.status == 0, "\(name): \(r.err)")
                #expect(r.out.isEmpty, "\(name) printed on stdout with --output")
            }
            files.append(file)
        }
        let validate = Process()
        validate.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        validate.arguments = ["python3", Self.root + "/tools/report/validate.py"] + files
        let out = Pipe()
        validate.standardOutput = out
        validate.standardError = out
        try validate.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        validate.waitUntilExit()
        #expect(validate.terminationStatus == 0, "\(text)")
        // Every subcommand's report names its command, and the sequential replay's is the documented one.
        let sequential = try CLIJSONTests.json(["replay", "--range", "0.9:1", "--json"])
        #expect(sequential["command"] as? String == "replay" && sequential["mode"] as? String == "sequential")
    }

    /// The subcommand an argument list runs: its leading words up to the first option or operand that
    /// is not a subcommand name (`bench core`, `replay`, `predict eval`...).
    static func subcommand(of arguments: [String]) -> String {
        let groups: Set<String> = ["bench", "predict", "disk", "trace", "events"]
        return groups.contains(arguments[0]) && arguments.count > 1 ? arguments[0] + " " + arguments[1] : arguments[0]
    }

    /// Every subcommand, as `subcommand(of:)` names it, that has a `--json` flag, read from
    /// `kvcache --experimental-dump-help` (swift-argument-parser's description of the command tree).
    static func subcommandsWithJSON() throws -> Set<String> {
        let r = try CLIJSONTests.run(["--experimental-dump-help"])
        let tree = try #require(try JSONSerialization.jsonObject(with: r.out) as? [String: Any])
        var found: Set<String> = []
        func walk(_ command: [String: Any], _ path: [String]) {
            let arguments = command["arguments"] as? [[String: Any]] ?? []
            let names = arguments.flatMap { ($0["names"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String } }
            if names.contains("json") && !path.isEmpty { found.insert(path.joined(separator: " ")) }
            for sub in command["subcommands"] as? [[String: Any]] ?? [] {
                walk(sub, path + [sub["commandName"] as? String ?? "?"])
            }
        }
        walk(try #require(tree["command"] as? [String: Any]), [])
        return found
    }

    @Test func outputWritesTheReportAndRefusesWhatIsNotARegularFile() throws {
        let dir = try Self.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let arguments = ["replay", "--range", "0.9:1", "--policy", "lru,fifo", "--capacity-blocks", "300,3000"]
        let printed = try CLIJSONTests.json(arguments + ["--json"])
        let file = dir + "/report.json"
        let written = try CLIJSONTests.run(arguments + ["--output", file])
        #expect(written.status == 0 && written.out.isEmpty)
        let read = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: file))) as? [String: Any])
        let strip = { (o: [String: Any]) in (o["runs"] as? [[String: Any]] ?? []).map { $0.filter { $0.key != "wall_s" }.keys.sorted() } }
        #expect(strip(read) == strip(printed))
        #expect((read["runs"] as? [[String: Any]])?.map { $0["hit_tokens"] as? Int } == (printed["runs"] as? [[String: Any]])?.map { $0["hit_tokens"] as? Int })
        // A symlink at the path is refused before the replay, and left as it was.
        let target = dir + "/target.txt", link = dir + "/link.json"
        try Data("keep".utf8).write(to: URL(fileURLWithPath: target))
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: target)
        let refused = try CLIJSONTests.run(arguments + ["--output", link])
        #expect(refused.status != 0 && refused.err.contains("not a regular file"), "\(refused.err)")
        #expect(try String(contentsOfFile: target, encoding: .utf8) == "keep")
        // CSV: a header line and one row per run, the same hit tokens.
        let csv = try CLIJSONTests.run(arguments + ["--csv"])
        let lines = String(decoding: csv.out, as: UTF8.self).split(separator: "\n")
        #expect(lines.count == 5)
        let header = lines[0].split(separator: ",").map(String.init)
        let column = try #require(header.firstIndex(of: "hit_tokens"))
        #expect(lines.dropFirst().map { Int($0.split(separator: ",", omittingEmptySubsequences: false)[column]) }
                == (printed["runs"] as? [[String: Any]])?.map { $0["hit_tokens"] as? Int })
        #expect(try CLIJSONTests.run(arguments + ["--csv", "--json"]).status != 0)
    }

    @Test func requestsOutHasOneLinePerRequestAndRun() throws {
        let dir = try Self.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let file = dir + "/requests.jsonl"
        let report = try CLIJSONTests.json(["replay", "--range", "0.9:1", "--policy", "lru,fifo", "--capacity-blocks", "300",
                                            "--requests-out", file, "--json"])
        let runs = try #require(report["runs"] as? [[String: Any]])
        let lines = try String(contentsOfFile: file, encoding: .utf8).split(separator: "\n")
        let records = try lines.map { try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) }
        #expect(records.count == runs.reduce(0) { $0 + ($1["requests"] as? Int ?? 0) })
        for run in runs {
            let mine = records.filter { $0["policy"] as? String == run["policy"] as? String }
            #expect(mine.reduce(0) { $0 + ($1["hit_tokens"] as? Int ?? 0) } == run["hit_tokens"] as? Int)
            #expect(mine.reduce(0) { $0 + ($1["input_tokens"] as? Int ?? 0) } == run["input_tokens"] as? Int)
        }
        // Timed mode: one line per finished request and run, the run's TTFT median among them.
        let timedFile = dir + "/timed.jsonl"
        let timed = try CLIJSONTests.json(["replay", "--mode", "timed", "--trace", try CLIJSONTests.fixture("mooncake_40.jsonl"),
                                           "--kv-gib", "0.5", "--compare", "on-demand", "--requests-out", timedFile, "--json"])
        let timedLines = try String(contentsOfFile: timedFile, encoding: .utf8).split(separator: "\n")
        #expect(timedLines.count == (timed["runs"] as? [[String: Any]])?.first?["requests"] as? Int)
    }
}
