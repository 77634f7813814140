import Foundation
import KVData
import Testing
@testable import KVSimulation

/// The RAGPulse reader (segments from side files, bad input named by file and line) and the unbounded
/// prefix-versus-chunk replay on a trace small enough to check by hand.
@Suite struct RAGPulseTests {
    static let sideFiles: [String: String] = [
        "1_sys_prompt.jsonl": "{\"sys_prompt_id\": 1, \"token_length\": 100}\n{\"sys_prompt_id\": 2, \"token_length\": 50}\n",
        "2_passages.jsonl": "{\"passage_id\": 10, \"token_length\": 30}\n{\"passage_id\": 11, \"token_length\": 40}\n",
        "3_history.jsonl": "{\"history_id\": 20, \"token_length\": 5}\n",
        "4_user_input.jsonl": "{\"user_input_id\": 30, \"token_length\": 3}\n{\"user_input_id\": 31, \"token_length\": 4}\n",
        "5_web_search.jsonl": "{\"web_search_id\": 40, \"token_length\": 9}\n",
    ]

    static func line(_ t: Int, _ input: Int, sys: [Int], passages: [Int], history: [Int] = [], web: [Int] = [],
                     user: [Int]) -> String {
        "{\"timestamp\": \"\(t)\", \"input_length\": \(input), \"output_length\": 4, \"hash_ids\": {\"sys_prompt\": \(sys), "
            + "\"passages_ids\": \(passages), \"history\": \(history), \"web_search\": \(web), \"user_input\": \(user)}, \"session_id\": \"s\"}"
    }

    /// A folder with the side files (minus `omit`, with `extra` files) and `trace` as 0_trace.jsonl.
    static func folder(trace: [String], omit: String? = nil, extra: [String: String] = [:]) throws -> (String, String) {
        let dir = NSTemporaryDirectory() + "ragpulse-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        for (name, text) in sideFiles.merging(extra, uniquingKeysWith: { $1 }) where name != omit {
            try text.write(toFile: dir + "/" + name, atomically: true, encoding: .utf8)
        }
        let path = dir + "/0_trace.jsonl"
        try (trace.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        return (dir, path)
    }

    @Test func readsSegmentsInPromptOrderAndReplaysExactly() throws {
        let (dir, path) = try Self.folder(trace: [
            Self.line(10, 200, sys: [1], passages: [10, 11], user: [30]),
            Self.line(12, 180, sys: [1], passages: [11, 10], user: [31]),
            Self.line(15, 120, sys: [2], passages: [10], web: [40], user: [30]),
            Self.line(20, 190, sys: [1], passages: [10, 11], history: [20], user: [31]),
        ])
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(try TraceLoader.detect(ByteSource(path: path)) == .ragpulse)
        let t = try RAGPulse.load(path: path)
        #expect(t.trace.format == .ragpulse && t.trace.requests.count == 4)
        #expect(t.trace.requests.map(\.arrival) == [0, 2, 5, 10])
        #expect(t.segments(of: 2).map(\.kind) == [.sysPrompt, .passages, .webSearch, .userInput])
        #expect(t.segments(of: 2).map(\.tokens) == [50, 30, 9, 3])
        #expect(t.templateTokens(of: 0) == 200 - 173)
        // Through the loader the same requests come back, without segment ids.
        #expect(try TraceLoader.load(path: path).requests == t.trace.requests)

        let r = ChunkReuseReplay.run(t, recomputeRatio: 0.5)
        // Prefix: 0, then sys 1 (100), then nothing (sys 2 is new), then sys 1, passage 10, 11 (170).
        #expect(r.prefixHitTokens == 100 + 170)
        // Chunks: request 2's passages 11 and 10 (70); request 3's passage 10 (30) and user 30 (3);
        // request 4's user 31 (4) after its prefix run (history 20 is new).
        #expect(r.chunkHitTokens == 70 + 33 + 4)
        #expect(r.recomputedTokens == 20 + 15 + 15 + 2 + 2)
        #expect(r.inputTokens == 690 && r.requests == 4)
        #expect(r.savedPrefillTokens == 270 + 107 - 54)
    }

    @Test func badInputNamesTheFileAndLine() throws {
        let good = Self.line(1, 200, sys: [1], passages: [10], user: [30])
        let cases: [(String, String)] = [
            (Self.line(2, 200, sys: [1], passages: [99], user: [30]), "passages_ids id 99 is not in the passages side file"),
            (Self.line(2, 100, sys: [1], passages: [10], user: [30]), "segments hold 133 tokens, more than input_length 100"),
            (Self.line(2, -5, sys: [1], passages: [10], user: [30]), "length outside 0...1073741824 or invalid timestamp"),
            (Self.line(2, 200, sys: [-1], passages: [10], user: [30]), "sys_prompt id -1 out of range"),
        ]
        for (bad, reason) in cases {
            let (dir, path) = try Self.folder(trace: [good, "", bad])
            defer { try? FileManager.default.removeItem(atPath: dir) }
            #expect(throws: DataError.badLine(path: path, line: 3, reason: reason)) { try RAGPulse.load(path: path) }
            let skipped = try RAGPulse.load(path: path, skipBadLines: true)
            #expect(skipped.trace.requests.count == 1 && skipped.trace.skippedLines == 1)
        }
        let (dir, path) = try Self.folder(trace: [good], omit: "3_history.jsonl")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(throws: DataError.missingFile(folder: dir, pattern: "N_history.jsonl")) { try RAGPulse.load(path: path) }
        let (dir2, path2) = try Self.folder(trace: [good], extra: [
            "2_passages.jsonl": "{\"passage_id\": 10, \"token_length\": 30}\n{\"passage_id\": 10, \"token_length\": 31}\n"])
        defer { try? FileManager.default.removeItem(atPath: dir2) }
        #expect(throws: DataError.badLine(path: dir2 + "/2_passages.jsonl", line: 2, reason: "passage_id 10 given lengths 30 and 31")) {
            try RAGPulse.load(path: path2)
        }
        let (dir3, path3) = try Self.folder(trace: [good], extra: ["4_user_input.jsonl": "{\"user_input_id\": 30, \"token_length\": -3}\n"])
        defer { try? FileManager.default.removeItem(atPath: dir3) }
        #expect(throws: DataError.badLine(path: dir3 + "/4_user_input.jsonl", line: 1, reason: "token_length -3 out of range")) {
            try RAGPulse.load(path: path3)
        }
    }
}
