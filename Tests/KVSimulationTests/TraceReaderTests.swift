import Foundation
import KVCache
import Testing
@testable import KVData
import KVScheduler
@testable import KVSimulation

func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }
func detect(_ s: String) throws -> TraceFormat? { try TraceLoader.detect(ByteSource(bytes: bytes(s))) }

func fixture(_ name: String) throws -> String {
    let url = try #require(Bundle.module.url(forResource: "Fixtures/\(name)", withExtension: nil))
    return url.path
}

@Suite struct TraceReaderTests {
    @Test func azureCSVReportsTheBadLineWithItsNumber() throws {
        let path = try fixture("azure_small.csv")
        #expect(throws: DataError.badLine(path: path, line: 4, reason: "input tokens 'oops' is not an integer in 1...16777216")) {
            try TraceLoader.load(path: path)
        }
    }

    @Test func azureCSVSkipsAndCountsBadLines() throws {
        let trace = try TraceLoader.load(path: try fixture("azure_small.csv"), skipBadLines: true)
        #expect(trace.format == .azure)
        #expect(trace.skippedLines == 1)
        #expect(trace.firstSkipped?.hasSuffix("azure_small.csv:4: input tokens 'oops' is not an integer in 1...16777216") == true)
        #expect(trace.requests.map(\.inputTokens) == [4808, 3180, 110, 20])
        #expect(trace.requests.map(\.outputTokens) == [10, 8, 27, 1])
        #expect(abs(trace.requests[1].arrival - 0.052) < 1e-6)
        #expect(abs(trace.requests[3].arrival - 3.0) < 1e-6)
        #expect(trace.hasTimestamps)
    }

    @Test func vidurCSVWithAndWithoutArrivals() throws {
        let timed = try TraceLoader.load(path: try fixture("splitwise_small.csv"))
        #expect(timed.format == .vidur && timed.hasTimestamps)
        #expect(timed.requests.map(\.arrival) == [0, 0.052, 1.5])
        let path = try fixture("vidur_small.csv")
        #expect(throws: DataError.badLine(path: path, line: 4, reason: "output tokens '-5' is not an integer in 0...16777216")) {
            try TraceLoader.load(path: path)
        }
        let untimed = try TraceLoader.load(path: path, skipBadLines: true)
        #expect(!untimed.hasTimestamps)
        #expect(untimed.requests.map(\.outputTokens) == [918, 905])
        #expect(untimed.skippedLines == 1)
    }

    @Test func burstGPTKeepsModelAndZeroOutputs() throws {
        let trace = try TraceLoader.load(path: try fixture("burstgpt_small.csv"))
        #expect(trace.format == .burstgpt)
        #expect(trace.requests.map(\.model) == ["ChatGPT", "ChatGPT", "GPT-4"])
        #expect(trace.requests.map(\.outputTokens) == [18, 0, 276])
        #expect(trace.requests.map(\.arrival) == [0, 40, 113])
    }

    @Test func shareGPTMakesOneRequestPerTurnWithSharedHistory() throws {
        let path = try fixture("sharegpt_small.jsonl")
        #expect(throws: DataError.badLine(path: path, line: 2, reason: "not a JSON object, or a number out of range")) {
            try TraceLoader.load(path: path)
        }
        let trace = try TraceLoader.load(path: path, skipBadLines: true)
        #expect(trace.format == .sharegpt && !trace.hasTimestamps && trace.skippedLines == 1)
        #expect(trace.requests.count == 3)   // two turns of conv-a, one of conv-b (the last has no answer)
        let first = trace.requests[0], second = trace.requests[1]
        #expect(second.session == "conv-a" && first.session == "conv-a")
        // Turn 2's prompt is turn 1's prompt + answer + the new message.
        #expect(second.inputTokens > first.inputTokens + first.outputTokens)
        #expect(Array(second.hashIDs.prefix(first.hashIDs.count)) == first.hashIDs)
        #expect(first.hashIDs.count == first.inputTokens / ShareGPT.prefixBlockTokens)
        #expect(trace.requests[2].promptText == "2+2?")
        #expect(trace.requests[2].outputTokens == ApproximateTokenCounter.count("4"))
    }

    @Test func shareGPTJSONArray() throws {
        let trace = try TraceLoader.load(path: try fixture("sharegpt_small.json"))
        #expect(trace.format == .sharegpt)
        #expect(trace.requests.map(\.session) == ["x1", "x2"])
    }

    @Test func gzipTracesReadLikePlainOnes() throws {
        let plain = try TraceLoader.load(path: try fixture("azure_small.csv"), skipBadLines: true)
        let gz = try TraceLoader.load(path: try fixture("azure_small.csv.gz"), skipBadLines: true)
        #expect(gz.requests == plain.requests && gz.skippedLines == 1)
    }

    @Test func castilloUsesTheFirstSampledLength() throws {
        let path = try fixture("castillo_small.jsonl")
        #expect(throws: DataError.badLine(path: path, line: 2, reason: "input_size missing or outside 1...16777216")) {
            try TraceLoader.load(path: path)
        }
        let trace = try TraceLoader.load(path: path, skipBadLines: true)
        #expect(trace.format == .castillo)
        #expect(trace.requests.map(\.outputTokens) == [425, 53])
        #expect(trace.requests.map(\.model) == ["meta-llama--Llama-3.1-8B-Instruct", "mistralai--Mistral-7B"])
    }

    @Test func mooncakeArrivalsInSecondsAndBlocksOf512() throws {
        let trace = try TraceLoader.load(path: try fixture("mooncake_small.jsonl"))
        #expect(trace.format == .mooncake)
        #expect(trace.requests.map(\.arrival) == [0, 0.5])
        #expect(trace.requests[0].hashBlockTokens == 512)
    }

    @Test func formatDetectionAndForcedFormats() throws {
        #expect(try detect("TIMESTAMP,ContextTokens,GeneratedTokens\r\n") == .azure)
        #expect(try detect("\n\narrived_at,num_prefill_tokens,num_decode_tokens\n") == .vidur)
        #expect(try detect("Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type") == .burstgpt)
        #expect(try detect("{\"timestamp\": 1, \"input_length\": 2, \"output_length\": 3, \"hash_ids\": []}") == .mooncake)
        #expect(try detect("a,b,c\n1,2,3") == nil)
        #expect(throws: DataError.unknownFormat(path: "x.csv")) { try TraceLoader.parse(bytes("a,b\n1,2\n"), path: "x.csv") }
        // A forced format whose columns are missing names the header line.
        #expect(throws: DataError.self) {
            try TraceLoader.parse(bytes("TIMESTAMP,ContextTokens,GeneratedTokens\n"), path: "y.csv", format: .burstgpt)
        }
        #expect(throws: DataError.cannotRead(path: "/nonexistent/trace.csv", reason: "No such file or directory")) {
            try TraceLoader.load(path: "/nonexistent/trace.csv")
        }
    }

    @Test func promptKeysShareExactlyTheSharedPrefix() {
        let a = TraceRequest(arrival: 0, inputTokens: 1100, outputTokens: 1, hashIDs: [1, 2, 3], hashBlockTokens: 512)
        let b = TraceRequest(arrival: 0, inputTokens: 600, outputTokens: 1, hashIDs: [1, 4], hashBlockTokens: 512)
        let ka = TracePromptKeys.keys(for: a, index: 0, blockTokens: 16)
        let kb = TracePromptKeys.keys(for: b, index: 1, blockTokens: 16)
        #expect(ka.count == 1100 / 16 && kb.count == 600 / 16)
        #expect(Array(ka.prefix(32)) == Array(kb.prefix(32)))   // the first 512 tokens
        #expect(ka[32] != kb[32])
        // Without hash ids keys are private to the request.
        let c = TraceRequest(arrival: 0, inputTokens: 64, outputTokens: 1)
        #expect(TracePromptKeys.keys(for: c, index: 5, blockTokens: 16) != TracePromptKeys.keys(for: c, index: 6, blockTokens: 16))
        #expect(Set(ka).count == ka.count)
        // Sequential mode keys the trace's own blocks by the same rule, a partial last block included.
        var sequential: [BlockKey] = []
        TracePromptKeys.append(for: a, index: 0, blockTokens: 512, partialLastBlock: true, to: &sequential)
        #expect(sequential.count == 3)
        #expect(Array(sequential.prefix(2)) == TracePromptKeys.keys(for: a, index: 0, blockTokens: 512))
    }

    @Test func poissonArrivalsAndRateScale() {
        let reqs = (0..<4000).map { _ in TraceRequest(arrival: 10, inputTokens: 1, outputTokens: 1) }
        let poisson = ArrivalSchedule.apply(to: reqs, hasTimestamps: false, poissonRate: 8, seed: 3)
        let meanGap = poisson.last!.arrival / Double(poisson.count - 1)
        #expect(abs(meanGap - 1.0 / 8) < 0.01)
        #expect(zip(poisson, poisson.dropFirst()).allSatisfy { $0.arrival <= $1.arrival })
        let scaled = ArrivalSchedule.apply(to: reqs, hasTimestamps: true, rateScale: 4)
        #expect(scaled[0].arrival == 2.5)
        #expect(ArrivalSchedule.apply(to: reqs, hasTimestamps: false)[7].arrival == 0)
    }
}

/// Hostile inputs: every number from a file is range-checked where it enters; nothing traps.
@Suite struct HostileTraceTests {
    func mooncake(_ lines: [String], skip: Bool = false) throws -> LoadedTrace {
        try Mooncake.read(ByteSource(bytes: bytes(lines.joined(separator: "\n")), name: "t.jsonl"), skipBadLines: skip)
    }

    @Test func hugeMooncakeLengthIsABadLineNotATrap() throws {
        let line = #"{"timestamp": 0, "input_length": 9223372036854775807, "output_length": 1, "hash_ids": [1]}"#
        #expect(throws: DataError.badLine(path: "t.jsonl", line: 1, reason: "input_length 9223372036854775807 or output_length 1 is outside 0...16777216")) {
            try mooncake([line])
        }
        #expect(throws: DataError.empty(path: "t.jsonl")) { try mooncake([line], skip: true) }
        let tooManyOutput = #"{"timestamp": 0, "input_length": 1, "output_length": 16777217, "hash_ids": [1]}"#
        #expect(throws: DataError.self) { try mooncake([tooManyOutput]) }
    }

    @Test func timestampsMustBeNonDecreasingAndWithinTheSpan() throws {
        let a = #"{"timestamp": 5000, "input_length": 1, "output_length": 1, "hash_ids": [1]}"#
        let b = #"{"timestamp": 1000, "input_length": 1, "output_length": 1, "hash_ids": [1]}"#
        let far = #"{"timestamp": 1e300, "input_length": 1, "output_length": 1, "hash_ids": [1]}"#
        #expect(throws: DataError.badLine(path: "t.jsonl", line: 2, reason: "timestamp 1000.0 is earlier than the previous row's 5000.0 (sort the trace by time)")) {
            try mooncake([a, b])
        }
        // Milliseconds divided by 1000, as the replay figures were computed (not multiplied by 1e-3).
        let nine = #"{"timestamp": 5009, "input_length": 1, "output_length": 1, "hash_ids": [1]}"#
        #expect(try mooncake([a, nine]).requests[1].arrival == 0.009)
        let skipped = try mooncake([a, b, far, a], skip: true)
        #expect(skipped.requests.map(\.arrival) == [0, 0])
        #expect(skipped.skippedLines == 2)
        // CSV: the same rule.
        let csv = "arrived_at,num_prefill_tokens,num_decode_tokens\n2.0,10,1\n1.0,10,1\n"
        #expect(throws: DataError.badLine(path: "v.csv", line: 3, reason: "timestamp 1.0 is earlier than the previous row's 2.0 (sort the trace by time)")) {
            try TraceLoader.parse(bytes(csv), path: "v.csv")
        }
        let inf = "arrived_at,num_prefill_tokens,num_decode_tokens\ninf,10,1\n"
        #expect(throws: DataError.badLine(path: "v.csv", line: 2, reason: "timestamp inf is not a finite number")) {
            try TraceLoader.parse(bytes(inf), path: "v.csv")
        }
    }

    @Test func csvTokenCountsAreBounded() throws {
        let csv = "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03,99999999999999999999,1\n"
        #expect(throws: DataError.badLine(path: "a.csv", line: 2, reason: "input tokens '99999999999999999999' is not an integer in 1...16777216")) {
            try TraceLoader.parse(bytes(csv), path: "a.csv")
        }
    }

    @Test func castilloRowsAreBounded() throws {
        func read(_ line: String) throws -> LoadedTrace { try TraceLoader.parse(bytes(line), path: "c.jsonl", format: .castillo) }
        #expect(throws: DataError.badLine(path: "c.jsonl", line: 1, reason: "an output length or output_mean outside 0...16777216")) {
            try read(#"{"prompt_id": "p", "input_size": 5, "output_mean": 1e300}"#)
        }
        let many = "[" + Array(repeating: "1", count: DataLimits.maxSamplesPerRow + 1).joined(separator: ",") + "]"
        #expect(throws: DataError.badLine(path: "c.jsonl", line: 1, reason: "1025 output_sizes (the limit is 1024)")) {
            try read(#"{"prompt_id": "p", "input_size": 5, "output_sizes": "# + many + "}")
        }
    }

    @Test func budgetRefusesPastTheWholeFileLimits() throws {
        var budget = RecordBudget(path: "f")
        try budget.add(line: 1, hashIDs: DataLimits.maxTotalHashIDs)
        #expect(throws: DataError.self) { try budget.add(line: 2, hashIDs: 1) }
        #expect(budget.records == 1 && budget.hashIDs == DataLimits.maxTotalHashIDs)
        #expect(throws: DataError.self) { try budget.add(line: 3, textBytes: DataLimits.maxTextBytes + 1) }
    }

    @Test func shareGPTLineNumbersCountLeadingBlankLines() throws {
        let text = "\n  \n{\"conversations\": 3}\n"
        #expect(throws: DataError.badLine(path: "s.jsonl", line: 3, reason: "wrong type at \"conversations\"")) {
            try TraceLoader.parse(bytes(text), path: "s.jsonl", format: .sharegpt)
        }
    }

    @Test func onlyRegularFilesAreOpened() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("kv-hostile-\(UInt64.random(in: 0...UInt64.max))").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let fifo = folder + "/fifo"
        #expect(mkfifo(fifo, 0o600) == 0)
        // A FIFO without a writer would block an ordinary open: refused at once instead.
        #expect(throws: DataError.cannotRead(path: fifo, reason: "not a regular file (pipes, sockets and devices are not supported)")) {
            try TraceLoader.load(path: fifo)
        }
        // `-` by path is refused (only TraceLoader.load reads standard input, on purpose, once).
        #expect(throws: DataError.cannotRead(path: "-", reason: "standard input is not supported here; give a file")) {
            try ByteSource(path: "-")
        }
        #expect(throws: DataError.cannotRead(path: folder, reason: "is a folder, not a file")) { try ByteSource(path: folder) }
        #expect(throws: DataError.self) { try ByteSource(path: "/dev/zero") }
    }

    @Test func lineOfManyValuesIsRefusedBeforeDecoding() throws {
        // 512 tokens per block: a request holds at most 32,768 ids, so a line of more values is refused
        // by counting, before the decoder sees it; with --skip-bad-lines it is skipped the same way.
        let ids = Array(repeating: "1", count: 40_000).joined(separator: ",")
        let line = #"{"timestamp": 0, "input_length": 512, "output_length": 1, "hash_ids": ["# + ids + "]}"
        let good = #"{"timestamp": 1, "input_length": 512, "output_length": 1, "hash_ids": [1]}"#
        #expect(throws: DataError.badLine(path: "t.jsonl", line: 1, reason: "more than 32832 JSON values in one line (the limit)")) {
            try mooncake([line])
        }
        let skipped = try mooncake([line, good], skip: true)
        #expect(skipped.requests.count == 1 && skipped.skippedLines == 1)
        // The format is still detected from such a first line, and gzip reads the same.
        #expect(try detect(line) == .mooncake)
    }

    /// The one-pass Mooncake scanner never accepts a line the decoder refuses and, when it accepts one,
    /// reads the same numbers (cross-check on spellings JSON allows and refuses).
    @Test func mooncakeScannerAgreesWithTheDecoder() throws {
        struct Row: Decodable, Equatable { var timestamp: Double; var input_length: Int; var output_length: Int; var hash_ids: [Int64] }
        let lines = [
            #"{"timestamp": 27482, "input_length": 6955, "output_length": 52, "hash_ids": [46, 47, 48]}"#,
            #" { "hash_ids" : [ ] , "output_length":0,"input_length":0,"timestamp":-1.5e3 } "#,
            #"{"timestamp": 1.0E+2, "input_length": 1, "output_length": 1, "hash_ids": [-0, 9007199254740993]}"#,
            #"{"timestamp": 01, "input_length": 1, "output_length": 1, "hash_ids": [1]}"#,
            #"{"timestamp": 1., "input_length": 1, "output_length": 1, "hash_ids": [1]}"#,
            #"{"timestamp": .5, "input_length": 1, "output_length": 1, "hash_ids": [1]}"#,
            #"{"timestamp": +1, "input_length": 1, "output_length": 1, "hash_ids": [1]}"#,
            #"{"timestamp": 1, "input_length": 1.0, "output_length": 1, "hash_ids": [1]}"#,
            #"{"timestamp": 1, "input_length": 1, "output_length": 1, "hash_ids": [1,]}"#,
            #"{"timestamp": 1, "input_length": 1, "output_length": 1, "hash_ids": [1 2]}"#,
            #"{"timestamp": 1, "input_length": 1, "output_length": 1}"#,
            #"{"timestamp": 1, "input_length": 1, "output_length": 1, "hash_ids": [1], "x": 2}"#,
            #"{"timestamp": 1, "input_length": 1, "output_length": 1, "hash_ids": [1]} x"#,
            #"{"timestamp": 1, "input_length": 99999999999999999999, "output_length": 1, "hash_ids": [1]}"#,
            #"{"time\u0073tamp": 1, "input_length": 1, "output_length": 1, "hash_ids": [1]}"#,
            #"{"timestamp": 1, "input_length": 1, "output_length": 1, "hash_ids": [1], "timestamp": 2}"#,
        ]
        var accepted = 0
        for text in lines {
            let bytes = ArraySlice(text.utf8)
            let decoded = try? JSONDecoder().decode(Row.self, from: Data(bytes))
            guard let fast = MooncakeRowScanner.scan(bytes, maxIDs: 100) else { continue }
            accepted += 1
            #expect(decoded == Row(timestamp: fast.timestamp, input_length: fast.inputLength, output_length: fast.outputLength,
                                   hash_ids: fast.hashIDs), "\(text)")
        }
        #expect(accepted == 3)
        #expect(MooncakeRowScanner.scan(ArraySlice(lines[0].utf8), maxIDs: 2) == nil)
    }

    @Test func valueCountMatchesTheValuesOutsideStrings() {
        // Cross-check against a count of the JSON written: commas and brackets inside strings do not count.
        let cases: [(String, Int)] = [
            ("{}", 2), ("[1,2,3]", 4), (#"{"a": "x,y[{", "b": [1, 2]}"#, 5), (#"{"a": "\"", "b": 1}"#, 3),
            (#"{"a": "\\", "b": [1]}"#, 4),
        ]
        for (text, expected) in cases {
            #expect(JSONLines.valueCount(ArraySlice(text.utf8), stoppingAfter: 100) == expected, "\(text)")
        }
        #expect(JSONLines.valueCount(ArraySlice("[1,2,3,4,5]".utf8), stoppingAfter: 3) == 4)
        // The newline finder agrees with a plain search.
        let bytes = Array("ab\ncd\n".utf8)
        #expect(JSONLines.newline(in: bytes, from: 0) == 2 && JSONLines.newline(in: bytes, from: 3) == 5)
        #expect(JSONLines.newline(in: bytes, from: 6) == 6 && JSONLines.newline(in: [], from: 0) == 0)
    }

    @Test func outputFolderIsMadeOrRefusedInWords() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("kv-folder-\(UInt64.random(in: 0...UInt64.max))").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        try OutputFolder.create(root + "/a/b/c/")
        var info = stat()
        #expect(stat(root + "/a/b/c", &info) == 0 && info.st_mode & S_IFMT == S_IFDIR)
        try OutputFolder.create(root + "/a/b")   // exists: fine
        #expect(FileManager.default.createFile(atPath: root + "/file", contents: Data()))
        #expect(symlink(root + "/a", root + "/link") == 0)
        let notAFolder = "exists and is not a folder (a file, symlink, device or FIFO)"
        #expect(throws: DataError.cannotWrite(path: root + "/file", reason: notAFolder)) { try OutputFolder.create(root + "/file") }
        #expect(throws: DataError.cannotWrite(path: root + "/link", reason: notAFolder)) { try OutputFolder.create(root + "/link") }
        #expect(throws: DataError.cannotWrite(path: root + "/file/sub", reason: "Not a directory")) { try OutputFolder.create(root + "/file/sub") }
        #expect(throws: DataError.self) { try OutputFolder.create("") }
    }

    @Test func detectionHoldsOnlyTheFirstLine() throws {
        // Many blank lines, then a header: found without holding the blanks.
        let text = String(repeating: "\n", count: 200_000) + "arrived_at,num_prefill_tokens,num_decode_tokens\n1,2,3\n"
        #expect(try detect(text) == .vidur)
        #expect(try detect(String(repeating: " \n", count: 1000)) == nil)
    }
}
