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

    /// Figures computed outside Swift (Python, from the published config.json constants) for the two
    /// real models: state bytes per layer and per checkpoint, KV per token, FLOPs saved by a 1,000-token hit.
    @Test func realModelFiguresMatchTheirConfigs() {
        let jamba = HybridModel.jamba15Mini, nemotron = HybridModel.nemotronH8B
        #expect(jamba.checkpointBytesPerLayer == 327_680)
        #expect(jamba.checkpointBytes == 9_175_040)
        #expect(jamba.kvBytesPerToken == 16_384)
        #expect(jamba.savedFLOPs(hitTokens: 1000).total == 22_980_165_632_000)
        #expect(nemotron.checkpointBytesPerLayer == 2_179_072)
        #expect(nemotron.checkpointBytes == 52_297_728)
        #expect(nemotron.kvBytesPerToken == 16_384)
        #expect(nemotron.attentionFLOPs(1000) == 100_270_080_000)
        #expect(nemotron.mlpFLOPs(1000) == 352_321_536_000)
        #expect(nemotron.mambaFLOPs(1000) == 209_756_160_000)
        #expect(nemotron.savedFLOPs(hitTokens: 1000).total == 13_890_945_024_000)
        // The paper's model: one checkpoint weighs as much as the KV of about 409 tokens.
        #expect(HybridModel.hybrid7B.checkpointBytes / HybridModel.hybrid7B.kvBytesPerToken == 408)
    }
}
