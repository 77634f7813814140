import Testing
@testable import KVHybrid

@Suite("hybrid model figures")
struct HybridModelTests {
    let m = HybridModel.hybrid7B

    @Test func bytesMatchThePaperModel() {
        #expect(m.checkpointBytesPerLayer == 1_116_160)
        #expect(m.checkpointBytes == 26_787_840)
        #expect(m.kvBytesPerToken == 65_536)
    }

    @Test func flopsMatchTheClosedForms() {
        let d: Int64 = 4096, n: Int64 = 128
        for l: Int64 in [0, 1, 7, 1000, 15_631] {
            #expect(m.attentionFLOPs(l) == 8 * l * d * d + 4 * l * l * d)
            #expect(m.mlpFLOPs(l) == 16 * l * d * d)
            #expect(m.mambaFLOPs(l) == 12 * l * d * d + 16 * l * d * n + 10 * l * d)
            let s = m.savedFLOPs(hitTokens: l)
            #expect(s.total == 24 * m.mambaFLOPs(l) + 4 * m.attentionFLOPs(l) + 28 * m.mlpFLOPs(l))
        }
    }

    @Test func referenceTotalIsASumOfPerRequestSavings() {
        // chat, 1 GB, vLLM+: 45,132 hit tokens over the trace; FLOPs are per request, so a single figure
        // checks the formula exactly: a 12-token hit.
        let twelve = m.savedFLOPs(hitTokens: 12).total
        #expect(twelve == 24 * (12 * 12 * 4096 * 4096 + 16 * 12 * 4096 * 128 + 10 * 12 * 4096)
                + 4 * (8 * 12 * 4096 * 4096 + 4 * 144 * 4096) + 28 * (16 * 12 * 4096 * 4096))
    }

    @Test func presetsAreFoundByName() {
        #expect(HybridModel.preset(named: "hybrid-7b") == .hybrid7B)
        #expect(HybridModel.preset(named: "Jamba-1.5-Mini") == .jamba15Mini)
        #expect(HybridModel.preset(named: "nemotron-h-8b") == .nemotronH8B)
        #expect(HybridModel.preset(named: "llama3-8b") == nil)
        // Grouped-query attention: a quarter of the paper model's KV per token.
        #expect(HybridModel.jamba15Mini.kvBytesPerToken == 16_384)
        #expect(HybridModel.nemotronH8B.checkpointBytesPerLayer == 2 * (8192 * 128 + (8192 + 2048) * 4))
    }
}
