import Foundation
import Testing
@testable import KVScheduler

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

    @Test func castilloJoinsPromptsAndSplitsByPrompt() throws {
        let prompts = try CastilloReader.parsePrompts(Self.bytes(Self.prompts), file: "prompts.jsonl")
        let set = try CastilloReader.parseLengths(Self.bytes(Self.lengths), file: "lengths.jsonl", prompts: prompts)
        #expect(set.examples.count == 4)
        #expect(set.skippedRecords == 1)   // prompt "zz" is unknown
        let first = set.examples[0]
        #expect(first.target == 20 && first.samples == [10, 20, 30] && !first.heldOut)
        #expect(first.input.promptTokens == 12 && first.input.modelID == "m-a")
        #expect(first.input.promptText == "Name three colours.")
        #expect(set.examples[1].target == 5 && !set.examples[1].heldOut)
        #expect(set.examples[2].heldOut)                       // validate
        #expect(set.examples[3].heldOut == LengthDataSet.hashSplitHeldOut("p3"))   // no split field
        let only = try CastilloReader.parseLengths(Self.bytes(Self.lengths), file: "l", prompts: prompts, modelID: "m-b")
        #expect(only.examples.count == 1)
        let tasks = try CastilloReader.parseLengths(Self.bytes(Self.lengths), file: "l", prompts: prompts, taskAsTemplate: true)
        #expect(tasks.examples[0].input.templateKey == StableHash.fnv1a("Alpaca"))
        var rehashed = set
        rehashed.splitByGroupHash()
        #expect(rehashed.examples.allSatisfy { $0.heldOut == LengthDataSet.hashSplitHeldOut($0.group) })
    }

    @Test func castilloRejectsMalformedLinesWithTheirNumber() throws {
        let prompts = try CastilloReader.parsePrompts(Self.bytes(Self.prompts), file: "prompts.jsonl")
        let cases: [(String, Int)] = [
            ("{\"prompt_id\": \"p1\", \"model\": \"m\", \"input_size\": 1, \"output_sizes\": [1]}\nnot json\n", 2),
            ("\n\n{\"prompt_id\": \"p1\", \"model\": \"m\", \"input_size\": 1}\n", 3),
            ("{\"prompt_id\": \"p1\", \"model\": \"m\", \"input_size\": 1, \"output_sizes\": []}\n", 1),
            ("{\"prompt_id\": \"p1\", \"model\": \"m\", \"input_size\": 1, \"output_sizes\": [1]}\n{\"prompt_id\": \"p1\", \"model\": \"m\", \"input_size\": 1, \"output_sizes\": [-4]}\n", 2),
            ("{\"prompt_id\": \"p1\", \"model\": 7, \"input_size\": 1, \"output_sizes\": [1]}\n", 1),
        ]
        for (text, line) in cases {
            do {
                _ = try CastilloReader.parseLengths(Self.bytes(text), file: "lengths.jsonl", prompts: prompts)
                Issue.record("accepted a malformed line: \(text)")
            } catch {
                guard case let .malformedLine(file, number, _) = error else { Issue.record("\(error)"); continue }
                #expect(file == "lengths.jsonl")
                #expect(number == line)
            }
        }
        #expect(throws: LengthDataError.malformedLine(file: "p", line: 2, reason: "missing field \"prompt_text\"")) {
            try CastilloReader.parsePrompts(Self.bytes("{\"prompt_id\": \"a\", \"prompt_text\": \"x\"}\n{\"prompt_id\": \"b\"}"), file: "p")
        }
    }

    @Test func castilloFolderWithGzipFiles() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("castillo-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        try Data(Self.prompts.utf8).write(to: folder.appendingPathComponent("x_prompts_a.jsonl"))
        try Data(Self.lengths.utf8).write(to: folder.appendingPathComponent("x_lengths_a.jsonl"))
        let set = try CastilloReader.load(folder: folder.path)
        #expect(set.examples.count == 4)
        #expect(throws: LengthDataError.self) { try CastilloReader.load(folder: folder.path + "/missing") }
        try FileManager.default.removeItem(at: folder.appendingPathComponent("x_lengths_a.jsonl"))
        #expect(throws: LengthDataError.missingFile(folder: folder.path, pattern: "*lengths*.jsonl[.gz]")) {
            try CastilloReader.load(folder: folder.path)
        }
    }

    @Test func shareGPTTurnsBecomeRequests() throws {
        let text = """
            {"id": "abc_0", "conversations": [{"from": "human", "value": "Hi there"}, {"from": "gpt", "value": "Hello, how can I help?"}, {"from": "human", "value": "Tell me a joke"}, {"from": "gpt", "value": "No."}]}
            {"id": "abc_1", "conversations": [{"from": "gpt", "value": "orphan reply"}]}
            {"id": "xyz", "conversations": [{"from": "human", "value": "unanswered"}]}
            """
        let set = try ShareGPTReader.parse(Self.bytes(text), file: "s.jsonl", modelID: "m")
        #expect(set.examples.count == 2)
        #expect(set.skippedRecords == 2)
        #expect(set.examples[0].target == Double(ApproximateTokenCounter.count("Hello, how can I help?")))
        #expect(set.examples[0].input.promptText == "Hi there")
        #expect(set.examples[0].input.modelID == "m")
        let context = ["Hi there", "Hello, how can I help?", "Tell me a joke"].map(ApproximateTokenCounter.count).reduce(0, +)
        #expect(set.examples[1].input.promptTokens == context)
        #expect(set.examples.allSatisfy { $0.group == "abc" && $0.heldOut == LengthDataSet.hashSplitHeldOut("abc") })
        #expect(ShareGPTReader.conversationGroup("QWJhYvA_12") == "QWJhYvA")
        #expect(ShareGPTReader.conversationGroup("plain_id_x") == "plain_id_x")
        let accented = """
            {"id": "u", "conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "héllo wörld 日本語"}, {"from": "human", "value": "more"}, {"from": "gpt", "value": "ok"}]}
            """
        for context in 1...12 {
            let withContext = try ShareGPTReader.parse(Self.bytes(accented), file: "u.jsonl", contextBytes: context)
            let prompt = withContext.examples[1].input.promptText ?? ""
            #expect(prompt.hasSuffix("\nmore"))
            #expect("héllo wörld 日本語".hasSuffix(prompt.dropLast(5)))
        }
        let array = try ShareGPTReader.parse(Self.bytes("[" + text.split(separator: "\n").joined(separator: ",") + "]"), file: "a.json")
        #expect(array.examples.count == 2)
    }

    @Test func shareGPTRejectsMalformedLinesWithTheirNumber() {
        let text = """
            {"id": "a", "conversations": []}
            {"id": "b", "conversations": [{"from": "human"}]}
            """
        #expect(throws: LengthDataError.malformedLine(file: "s.jsonl", line: 2, reason: "missing field \"value\"")) {
            try ShareGPTReader.parse(Self.bytes(text), file: "s.jsonl")
        }
        #expect(throws: LengthDataError.malformedLine(file: "s.jsonl", line: 1, reason: "not a JSON object")) {
            try ShareGPTReader.parse(Self.bytes("{oops\n"), file: "s.jsonl")
        }
        #expect(throws: LengthDataError.self) { try ShareGPTReader.parse(Self.bytes("[{\"id\": 3}]"), file: "a.json") }
    }

    @Test func gzipMembersAreInflatedAndDamageIsReported() throws {
        // `printf '{"a":1}\\n{"a":2}\\n' | gzip` and `printf '{"a":3}\\n' | gzip`, concatenated.
        let first = [UInt8](Data(base64Encoded: "H4sIAAAAAAACA6tWSlSyMqzlqgbRRrVcAGbAWhkQAAAA")!)
        let second = [UInt8](Data(base64Encoded: "H4sIAAAAAAACA6tWSlSyMq7lAgAod2x3CAAAAA==")!)
        #expect(try CompressedFile.inflate(first) == Self.bytes("{\"a\":1}\n{\"a\":2}\n"))
        #expect(try CompressedFile.inflate(first + second) == Self.bytes("{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n"))
        #expect(throws: LengthDataError.self) { try CompressedFile.inflate(Array(first.dropLast(12))) }
        var flipped = first
        flipped[14] ^= 0xff
        #expect(throws: LengthDataError.self) { try CompressedFile.inflate(flipped) }
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("lines-\(UUID().uuidString).jsonl.gz")
        try Data(first).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        #expect(try CompressedFile.readAll(path: file.path) == Self.bytes("{\"a\":1}\n{\"a\":2}\n"))
        #expect(throws: LengthDataError.self) { try CompressedFile.readAll(path: file.path + ".missing") }
    }
}

@Suite("Prediction: Mooncake lengths")
struct PredictionMooncakeTests {
    @Test func readsInArrivalOrderAndHoldsOutTheLaterHalf() throws {
        let text = """
            {"timestamp": 30, "input_length": 600, "output_length": 12, "hash_ids": [7, 8]}
            {"timestamp": 10, "input_length": 100, "output_length": 40, "hash_ids": [3]}
            {"timestamp": 20, "input_length": 50, "output_length": 5, "hash_ids": []}
            {"timestamp": 40, "input_length": 70, "output_length": 9}
            """
        let set = try MooncakeLengthReader.parse(Array(text.utf8), file: "m.jsonl")
        #expect(set.examples.map(\.target) == [40, 5, 12, 9])
        #expect(set.examples.map(\.heldOut) == [false, false, true, true])
        #expect(set.examples.map(\.input.templateKey) == [3, nil, 7, nil])
        #expect(throws: LengthDataError.malformedLine(file: "m.jsonl", line: 2, reason: "negative or huge length")) {
            try MooncakeLengthReader.parse(Array("{\"input_length\": 1, \"output_length\": 1}\n{\"input_length\": 1, \"output_length\": -1}".utf8), file: "m.jsonl")
        }
        #expect(throws: LengthDataError.malformedLine(file: "m.jsonl", line: 1, reason: "missing field \"output_length\"")) {
            try MooncakeLengthReader.parse(Array("{\"input_length\": 1}".utf8), file: "m.jsonl")
        }
    }
}
