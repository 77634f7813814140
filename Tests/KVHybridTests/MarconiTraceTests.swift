import KVData
import Testing

@Suite("Marconi trace reader")
struct MarconiTraceTests {
    func parse(_ text: String, skip: Bool = false) throws(DataError) -> MarconiTrace.Trace {
        try MarconiTrace.read(ByteSource(bytes: Array(text.utf8), name: "t.jsonl"), skipBadLines: skip)
    }

    let good = #"{"session_id":3,"turn_id":1,"ts":0.5,"num_input_tokens":2,"num_output_tokens":1,"input_tokens":[1,7],"output_tokens":[9]}"#

    @Test func readsRequestsInFileOrder() throws {
        let t = try parse(good + "\n\n" + good.replacingOccurrences(of: "\"ts\":0.5", with: "\"ts\":0.1") + "\n")
        #expect(t.requests.count == 2)
        #expect(t.requests[0].input == [1, 7] && t.requests[0].output == [9] && t.requests[0].session == 3)
        #expect(t.requests[1].time == 0.1)
        #expect(TraceFormat.detect(firstLine: good[...]) == .marconi)
    }

    @Test(arguments: [
        (#""num_input_tokens":2"#, #""num_input_tokens":3"#, "num_input_tokens 3 but 2 input_tokens"),
        ("[1,7]", "[1,-7]", "token id outside"),
        ("[1,7]", "[1,4294967296]", "token id outside"),
        (#""turn_id":1"#, #""turn_id":-1"#, "negative"),
        (#""ts":0.5,"#, "", "missing field \"ts\""),
    ])
    func malformedLinesNameTheirLine(from: String, to: String, reason: String) throws {
        let bad = good.replacingOccurrences(of: from, with: to)
        do {
            _ = try parse(good + "\n" + bad + "\n")
            Issue.record("accepted a malformed line")
        } catch {
            #expect(error.description.hasPrefix("t.jsonl:2: "))
            #expect(error.description.contains(reason), "\(error.description)")
        }
        let skipped = try parse(good + "\n" + bad + "\n", skip: true)
        #expect(skipped.requests.count == 1 && skipped.skippedLines == 1)
    }
}
