import Foundation
import KVCache
import Testing
import KVData
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
        #expect(throws: DataError.badLine(path: path, line: 4, reason: "input tokens 'oops' is not a positive integer")) {
            try TraceLoader.load(path: path)
        }
    }

    @Test func azureCSVSkipsAndCountsBadLines() throws {
        let trace = try TraceLoader.load(path: try fixture("azure_small.csv"), skipBadLines: true)
        #expect(trace.format == .azure)
        #expect(trace.skippedLines == 1)
        #expect(trace.firstSkipped?.hasSuffix("azure_small.csv:4: input tokens 'oops' is not a positive integer") == true)
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
        #expect(throws: DataError.badLine(path: path, line: 4, reason: "output tokens '-5' is not a non-negative integer")) {
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
        #expect(throws: DataError.badLine(path: path, line: 2, reason: "not a JSON object")) {
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
        #expect(throws: DataError.badLine(path: path, line: 2, reason: "input_size missing or not positive")) {
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
