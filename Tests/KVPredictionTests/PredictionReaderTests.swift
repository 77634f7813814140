import Foundation
import Testing
import KVData
@testable import KVPrediction
import KVScheduler

@Suite("Prediction: dataset readers")
struct PredictionReaderTests {
    static let prompts = """
        {"prompt_id": "p1", "dataset": "Alpaca", "split": "train", "prompt_text": "Name three colours."}
        {"prompt_id": "p2", "dataset": "Mbpp", "split": "validate", "prompt_text": "Write a function that adds two numbers."}

        {"prompt_id": "p3", "dataset": "Mbpp", "prompt_text": "Sort a list."}
        """
    static let lengths = """
        {"sample_id": "s1", "prompt_id": "p1", "model": "m-a", "dataset": "Alpaca", "input_size": 12, "output_sizes": [10, 20, 30], "output_mean": 20.0}
        {"sample_id": "s2", "prompt_id": "p1", "model": "m-b", "dataset": "Alpaca", "input_size": 13, "output_sizes": [5, 5]}
        {"sample_id": "s3", "prompt_id": "p2", "model": "m-a", "dataset": "Mbpp", "input_size": 30, "output_sizes": [100, 200]}
        {"sample_id": "s4", "prompt_id": "zz", "model": "m-a", "dataset": "Mbpp", "input_size": 30, "output_sizes": [1]}
        {"sample_id": "s5", "prompt_id": "p3", "model": "m-a", "dataset": "Mbpp", "input_size": 9, "output_sizes": [7]}
        """

    static func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }
    static func source(_ s: String, _ name: String) throws -> ByteSource { try ByteSource(bytes: bytes(s), name: name) }
    static func castillo(_ lengths: String, _ name: String, modelID: String? = nil, taskAsTemplate: Bool = false) throws -> LengthDataSet {
        try LengthDataSet.castillo(lengths: source(lengths, name), prompts: source(Self.prompts, "prompts.jsonl"),
                                   modelID: modelID, taskAsTemplate: taskAsTemplate)
    }
    static func shareGPT(_ text: String, _ name: String, modelID: String? = nil, contextBytes: Int = 0) throws -> LengthDataSet {
        try LengthDataSet.shareGPT(source(text, name), modelID: modelID, contextBytes: contextBytes)
    }

    @Test func castilloJoinsPromptsAndSplitsByPrompt() throws {
        let set = try Self.castillo(Self.lengths, "lengths.jsonl")
        #expect(set.examples.count == 4)
        #expect(set.skippedRecords == 1)   // prompt "zz" is unknown
        let first = set.examples[0]
        #expect(first.target == 20 && first.samples == [10, 20, 30] && !first.heldOut)
        #expect(first.input.promptTokens == 12 && first.input.modelID == "m-a")
        #expect(first.input.promptText == "Name three colours.")
        #expect(set.examples[1].target == 5 && !set.examples[1].heldOut)
        #expect(set.examples[2].heldOut)                       // validate
        #expect(set.examples[3].heldOut == LengthDataSet.hashSplitHeldOut("p3"))   // no split field
        let only = try Self.castillo(Self.lengths, "l", modelID: "m-b")
        #expect(only.examples.count == 1)
        let tasks = try Self.castillo(Self.lengths, "l", taskAsTemplate: true)
        #expect(tasks.examples[0].input.templateKey == StableHash.fnv1a("Alpaca"))
        var rehashed = set
        rehashed.splitByGroupHash()
        #expect(rehashed.examples.allSatisfy { $0.heldOut == LengthDataSet.hashSplitHeldOut($0.group) })
    }

    @Test func castilloRejectsMalformedLinesWithTheirNumber() throws {
        let cases: [(String, Int)] = [
            ("{\"prompt_id\": \"p1\", \"model\": \"m\", \"input_size\": 1, \"output_sizes\": [1]}\nnot json\n", 2),
            ("\n\n{\"prompt_id\": \"p1\", \"model\": \"m\", \"input_size\": 1}\n", 3),
            ("{\"prompt_id\": \"p1\", \"model\": \"m\", \"input_size\": 1, \"output_sizes\": []}\n", 1),
            ("{\"prompt_id\": \"p1\", \"model\": \"m\", \"input_size\": 1, \"output_sizes\": [1]}\n{\"prompt_id\": \"p1\", \"model\": \"m\", \"input_size\": 1, \"output_sizes\": [-4]}\n", 2),
            ("{\"prompt_id\": \"p1\", \"model\": 7, \"input_size\": 1, \"output_sizes\": [1]}\n", 1),
            ("{\"prompt_id\": \"p1\", \"input_size\": 1, \"output_sizes\": [1]}\n", 1),
        ]
        for (text, line) in cases {
            do {
                _ = try Self.castillo(text, "lengths.jsonl")
                Issue.record("accepted a malformed line: \(text)")
            } catch {
                guard case let .badLine(file, number, _) = error as? DataError else { Issue.record("\(error)"); continue }
                #expect(file == "lengths.jsonl")
                #expect(number == line)
            }
        }
        #expect(throws: DataError.badLine(path: "p", line: 2, reason: "missing field \"prompt_text\"")) {
            try Castillo.readPrompts(Self.source("{\"prompt_id\": \"a\", \"prompt_text\": \"x\"}\n{\"prompt_id\": \"b\"}", "p"))
        }
    }

    @Test func castilloFolderWithGzipFiles() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("castillo-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        try Data(Self.prompts.utf8).write(to: folder.appendingPathComponent("x_prompts_a.jsonl"))
        try Data(Self.lengths.utf8).write(to: folder.appendingPathComponent("x_lengths_a.jsonl"))
        let set = try LengthDataSet.castillo(folder: folder.path)
        #expect(set.examples.count == 4)
        #expect(throws: DataError.self) { try LengthDataSet.castillo(folder: folder.path + "/missing") }
        try FileManager.default.removeItem(at: folder.appendingPathComponent("x_lengths_a.jsonl"))
        #expect(throws: DataError.missingFile(folder: folder.path, pattern: "*lengths*.jsonl[.gz]")) {
            try LengthDataSet.castillo(folder: folder.path)
        }
    }

    @Test func shareGPTTurnsBecomeRequests() throws {
        let text = """
            {"id": "abc_0", "conversations": [{"from": "human", "value": "Hi there"}, {"from": "gpt", "value": "Hello, how can I help?"}, {"from": "human", "value": "Tell me a joke"}, {"from": "gpt", "value": "No."}]}
            {"id": "abc_1", "conversations": [{"from": "gpt", "value": "orphan reply"}]}
            {"id": "xyz", "conversations": [{"from": "human", "value": "unanswered"}]}
            """
        let set = try Self.shareGPT(text, "s.jsonl", modelID: "m")
        #expect(set.examples.count == 2)
        #expect(set.skippedRecords == 2)
        #expect(set.examples[0].target == Double(ApproximateTokenCounter.count("Hello, how can I help?")))
        #expect(set.examples[0].input.promptText == "Hi there")
        #expect(set.examples[0].input.modelID == "m")
        let context = ["Hi there", "Hello, how can I help?", "Tell me a joke"].map(ApproximateTokenCounter.count).reduce(0, +)
        #expect(set.examples[1].input.promptTokens == context)
        #expect(set.examples.allSatisfy { $0.group == "abc" && $0.heldOut == LengthDataSet.hashSplitHeldOut("abc") })
        #expect(LengthDataSet.conversationGroup("QWJhYvA_12") == "QWJhYvA")
        #expect(LengthDataSet.conversationGroup("plain_id_x") == "plain_id_x")
        let accented = """
            {"id": "u", "conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "héllo wörld 日本語"}, {"from": "human", "value": "more"}, {"from": "gpt", "value": "ok"}]}
            """
        for context in 1...12 {
            let withContext = try Self.shareGPT(accented, "u.jsonl", contextBytes: context)
            let prompt = withContext.examples[1].input.promptText ?? ""
            #expect(prompt.hasSuffix("\nmore"))
            #expect("héllo wörld 日本語".hasSuffix(prompt.dropLast(5)))
        }
        let array = try Self.shareGPT("[" + text.split(separator: "\n").joined(separator: ",") + "]", "a.json")
        #expect(array.examples.count == 2)
        // The OpenAI spelling (role, content) reads the same.
        let openAI = text.replacingOccurrences(of: "\"from\"", with: "\"role\"").replacingOccurrences(of: "\"value\"", with: "\"content\"")
            .replacingOccurrences(of: "\"human\"", with: "\"user\"").replacingOccurrences(of: "\"gpt\"", with: "\"assistant\"")
        #expect(try Self.shareGPT(openAI, "o.jsonl").examples.map(\.target) == set.examples.map(\.target))
        // The replay's view of the same file charges template tokens per message on the same rule.
        let trace = try ShareGPT.trace(Self.source(text, "s.jsonl"))
        #expect(trace.requests.map(\.inputTokens) == [ApproximateTokenCounter.count("Hi there") + 4, context + 3 * 4])
    }

    @Test func shareGPTRejectsMalformedLinesWithTheirNumber() {
        let text = """
            {"id": "a", "conversations": []}
            {"id": "b", "conversations": 5}
            """
        #expect(throws: DataError.badLine(path: "s.jsonl", line: 2, reason: "wrong type at \"conversations\"")) {
            try Self.shareGPT(text, "s.jsonl")
        }
        #expect(throws: DataError.badLine(path: "s.jsonl", line: 1, reason: "not a JSON object, or a number out of range")) {
            try Self.shareGPT("{oops\n", "s.jsonl")
        }
        #expect(throws: DataError.badLine(path: "a.json", line: 1, reason: "record 1 is not a conversation")) {
            try Self.shareGPT("[{\"id\": 3}]", "a.json")
        }
    }

    @Test func gzipMembersAreInflatedAndDamageIsReported() throws {
        // `printf '{"a":1}\\n{"a":2}\\n' | gzip` and `printf '{"a":3}\\n' | gzip`, concatenated.
        let first = [UInt8](Data(base64Encoded: "H4sIAAAAAAACA6tWSlSyMqzlqgbRRrVcAGbAWhkQAAAA")!)
        let second = [UInt8](Data(base64Encoded: "H4sIAAAAAAACA6tWSlSyMq7lAgAod2x3CAAAAA==")!)
        func inflate(_ b: [UInt8]) throws -> [UInt8] { try ByteSource(bytes: b).readAll() }
        #expect(try inflate(first) == Self.bytes("{\"a\":1}\n{\"a\":2}\n"))
        #expect(try inflate(first + [0, 0] + second) == Self.bytes("{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n"))
        #expect(throws: DataError.self) { try inflate(Array(first.dropLast(12))) }
        var flipped = first
        flipped[14] ^= 0xff
        #expect(throws: DataError.self) { try inflate(flipped) }
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("lines-\(UUID().uuidString).jsonl.gz")
        try Data(first).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        #expect(try ByteSource.readAll(path: file.path) == Self.bytes("{\"a\":1}\n{\"a\":2}\n"))
        #expect(throws: DataError.self) { try ByteSource.readAll(path: file.path + ".missing") }
        // Lines that straddle the pieces of a large stream are walked whole, numbered as in the file.
        let many = (1...30_000).map { "{\"a\":\($0)}" }.joined(separator: "\n")
        var seen = 0
        try JSONLines.forEachLine(in: ByteSource(bytes: Self.bytes(many))) { (line, number) throws(DataError) in
            seen += 1
            if String(decoding: line, as: UTF8.self) != "{\"a\":\(number)}" { Issue.record("line \(number)") }
        }
        #expect(seen == 30_000)
    }

    @Test func aNumberThatDoesNotFitIsNotCalledAMalformedObject() throws {
        struct Row: Decodable { var id: Int64 }
        let line = ArraySlice(Array("{\"id\": 1e308}".utf8))
        #expect(throws: DataError.badLine(path: "r.jsonl", line: 4, reason: "not a JSON object, or a number out of range")) {
            _ = try JSONLines.decode(Row.self, line, path: "r.jsonl", line: 4)
        }
    }
}

@Suite("Prediction: Mooncake lengths")
struct PredictionMooncakeTests {
    @Test func readsInArrivalOrderAndHoldsOutTheLaterHalf() throws {
        let text = """
            {"timestamp": 10, "input_length": 100, "output_length": 40, "hash_ids": [3]}
            {"timestamp": 20, "input_length": 50, "output_length": 5, "hash_ids": [5]}
            {"timestamp": 30, "input_length": 600, "output_length": 12, "hash_ids": [7, 8]}
            {"timestamp": 40, "input_length": 70, "output_length": 9, "hash_ids": [9]}
            """
        func read(_ t: String) throws -> LengthDataSet {
            LengthDataSet.mooncake(try TraceLoader.parse(Array(t.utf8), path: "m.jsonl", format: .mooncake))
        }
        let set = try read(text)
        #expect(set.examples.map(\.target) == [40, 5, 12, 9])
        #expect(set.examples.map(\.heldOut) == [false, false, true, true])
        #expect(set.examples.map(\.input.templateKey) == [3, 5, 7, 9])
        // Out of order: refused with the line, as the replay refuses it.
        #expect(throws: DataError.badLine(path: "m.jsonl", line: 2, reason: "timestamp 10.0 is earlier than the previous row's 30.0 (sort the trace by time)")) {
            try read("{\"timestamp\": 30, \"input_length\": 1, \"output_length\": 1, \"hash_ids\": [1]}\n{\"timestamp\": 10, \"input_length\": 1, \"output_length\": 1, \"hash_ids\": [1]}")
        }
        // The replay's reader: a row the replay rejects is rejected here too.
        #expect(throws: DataError.badLine(path: "m.jsonl", line: 2, reason: "input_length 1 or output_length -1 is outside 0...16777216")) {
            try read("{\"timestamp\": 1, \"input_length\": 1, \"output_length\": 1, \"hash_ids\": [1]}\n{\"timestamp\": 2, \"input_length\": 1, \"output_length\": -1, \"hash_ids\": [1]}")
        }
        #expect(throws: DataError.badLine(path: "m.jsonl", line: 1, reason: "missing field \"hash_ids\"")) {
            try read("{\"timestamp\": 1, \"input_length\": 1, \"output_length\": 1}")
        }
    }
}
