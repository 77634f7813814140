import Foundation
import KVCache
import KVData
import Testing

/// The report layer without the CLI: the envelope and its one encoder (snake_case, sorted keys, null for
/// missing and non-finite figures), the CSV (one row per run, RFC 4180 quoting), and standard input's
/// replay of a detected head (`ByteSource.mark` / `rewind`) over random piece boundaries, gzip included.
@Suite("Report layer")
struct ReportLayerTests {
    struct Header: Encodable { var traceName: String; var blockTokens: Int }
    struct Run: Encodable { var policy: String; var hitTokensL1: Int; var ttftP50S: Double; var share: ReportNumber; var stoppedAtEOS: Bool }

    @Test func theEnvelopeIsSnakeCasedSortedAndNullsMissingFigures() throws {
        let report = Report(command: "replay", header: Header(traceName: "t, \"quoted\"", blockTokens: 16),
                            runs: [Run(policy: "lru", hitTokensL1: 3, ttftP50S: 0.25, share: ReportNumber(nil), stoppedAtEOS: true),
                                   Run(policy: "pgdsf-probation", hitTokensL1: 5, ttftP50S: 1.5, share: ReportNumber(.nan), stoppedAtEOS: false)])
        let json = try report.json()
        let o = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        #expect(o.keys.sorted() == ["block_tokens", "command", "runs", "schema_version", "trace_name"])
        #expect(o["schema_version"] as? Int == 1 && o["command"] as? String == "replay")
        let runs = try #require(o["runs"] as? [[String: Any]])
        #expect(runs[0].keys.sorted() == ["hit_tokens_l1", "policy", "share", "stopped_at_eos", "ttft_p50_s"])
        #expect(runs.allSatisfy { $0["share"] is NSNull })
        // Keys appear sorted in the text itself.
        let keys = json.split(separator: "\n").compactMap { line -> String? in
            line.hasPrefix("  \"") ? String(line.dropFirst(3).prefix { $0 != "\"" }) : nil
        }
        #expect(keys == keys.sorted())
        // JSONValue goes through the same encoder; its keys are data, kept as given.
        let value = JSONValue.object([("b", .double(.infinity)), ("A-key", .int(2)), ("list", .array([.bool(true), .null]))])
        #expect(value.text == #"{"A-key":2,"b":null,"list":[true,null]}"#)
        // CSV: a header line, one row per run, header fields repeated, quoting per RFC 4180.
        let csv = try ReportCSV.render(json: json).split(separator: "\n", omittingEmptySubsequences: false)
        #expect(csv.count == 4 && csv[3].isEmpty)
        #expect(csv[0] == "block_tokens,command,schema_version,trace_name,hit_tokens_l1,policy,share,stopped_at_eos,ttft_p50_s")
        #expect(csv[1] == #"16,replay,1,"t, ""quoted""",3,lru,,true,0.25"#)
        #expect(csv[2] == #"16,replay,1,"t, ""quoted""",5,pgdsf-probation,,false,1.5"#)
        #expect(throws: DataError.self) { try ReportCSV.render(json: "[1]") }
    }

    @Test(arguments: ["camelCase": "camel_case", "ttftP50S": "ttft_p50_s", "hitTokensL1": "hit_tokens_l1",
                      "stoppedAtEOS": "stopped_at_eos", "HTTPServer": "http_server", "already_snake": "already_snake",
                      "e2eS": "e2e_s", "kvGib": "kv_gib"])
    func snakeCase(_ key: String, _ expected: String) throws {
        struct One: Encodable {
            let key: String
            func encode(to encoder: any Encoder) throws {
                struct K: CodingKey { var stringValue: String; var intValue: Int? { nil }
                    init(stringValue: String) { self.stringValue = stringValue }; init?(intValue: Int) { nil } }
                var c = encoder.container(keyedBy: K.self)
                try c.encode(1, forKey: K(stringValue: key))
            }
        }
        #expect(try ReportEncoder.compact(One(key: key)) == "{\"\(expected)\":1}")
    }

    /// `mark`, reads of random sizes, `rewind`, then reading everything gives the whole data once:
    /// what `--trace -` relies on after format detection.
    @Test(arguments: 0..<12)
    func rewindServesTheMarkedHeadAgain(seed: Int) throws {
        var g = SplitMix64(seed: UInt64(seed) &+ 1)
        let size = Int.random(in: 0...300_000, using: &g)
        let data = (0..<size).map { _ in UInt8.random(in: 32...126, using: &g) }
        var bytes = data
        if seed % 2 == 1 {
            // The same data gzip-compressed: the rewind replays inflated bytes.
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("kvcache-rewind-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: dir) }
            try Data(data).write(to: dir.appendingPathComponent("d"))
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            p.arguments = ["gzip", "-k", dir.appendingPathComponent("d").path]
            try p.run()
            p.waitUntilExit()
            bytes = Array(try Data(contentsOf: dir.appendingPathComponent("d.gz")))
        }
        let source = try ByteSource(bytes: bytes, name: "-")
        source.mark()
        var head: [UInt8] = []
        for _ in 0..<Int.random(in: 0...3, using: &g) { _ = try source.read(appendingTo: &head) }
        source.rewind()
        #expect(Array(data.prefix(head.count)) == head)
        #expect(try source.readAll() == data)
    }
}
