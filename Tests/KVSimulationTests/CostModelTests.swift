import Testing
import KVCache
@testable import KVSimulation

@Suite struct CostModelTests {
    let h100 = RooflineCostModel(model: .llama3_8B, hardware: .h100_80GB)

    @Test func kvBytesFollowFromTheModel() {
        #expect(ModelSpec.llama3_8B.kvBytesPerToken == 131_072)        // 2 x 32 x 8 x 128 x 2
        #expect(ModelSpec.llama3_70B_TP4.kvBytesPerToken == 327_680)
        #expect(ModelSpec.qwen25_7B.kvBytesPerToken == 57_344)
        #expect(ModelSpec.jambaHybrid.kvBytesPerToken == 16_384)       // 4 attention layers only
        #expect(ModelSpec.preset(named: "LLAMA3-8B") == .llama3_8B)
        #expect(ModelSpec.preset(named: "llama3-70b") == .llama3_70B_TP4)
        #expect(HardwareSpec.preset(named: "h100-80gb") == .h100_80GB)
        #expect(ModelSpec.preset(named: "gpt-9") == nil)
    }

    @Test func decodeIsBandwidthBound() {
        var one = StepWork()
        one.addDecode(context: 100)
        let t = h100.stepSeconds(one)
        let weightsOnly = ModelSpec.llama3_8B.weightBytes / (HardwareSpec.h100_80GB.memoryBandwidth * 0.8)
        #expect(t > weightsOnly && t < weightsOnly * 1.2)
        // 32 sequences cost far less than 32 single steps; long contexts cost more than short ones.
        var batch = StepWork()
        for _ in 0..<32 { batch.addDecode(context: 100) }
        #expect(h100.stepSeconds(batch) < 2 * t)
        var long = StepWork()
        for _ in 0..<32 { long.addDecode(context: 8000) }
        #expect(h100.stepSeconds(long) > h100.stepSeconds(batch))
    }

    /// Below the balance point a step costs about what one decode costs (reading the weights); well
    /// above it, time grows with the tokens.
    @Test func stallFreeBudgetIsWhereComputeMeetsTheMemoryRead() {
        func step(_ n: Int) -> Double {
            var w = StepWork()
            w.addPrefill(tokens: n, contextBefore: 0)
            return h100.stepSeconds(w)
        }
        let budget = h100.stallFreeBudget()
        let n = budget.baseTokens
        #expect(n > 150 && n < 300)                                   // about 222 on H100 for bf16
        #expect(h100.stallFreeBudget(multiple: 16).baseTokens % 16 == 0)
        #expect(h100.stallFreeBudget(multiple: 16).baseTokens >= n)
        #expect(step(n - 20) < step(1) * 1.1)
        #expect(step(4 * n) > step(n) * 3)
        let a100 = RooflineCostModel(model: .llama3_8B, hardware: .a100_80GB)
        #expect(a100.stallFreeBudget().baseTokens < n)                // less compute per byte of bandwidth
        // Decodes that read much KV leave room for more prefill: at the budget for 64 decodes of 8k
        // context the step is still about as long as the decodes alone.
        var decodes = StepWork()
        for _ in 0..<64 { decodes.addDecode(context: 8192) }
        let room = budget.tokens(decodeContextTokens: 64 * 8192) - 64
        #expect(room > n)
        var mixed = decodes
        mixed.addPrefill(tokens: room - 32, contextBefore: 0)
        #expect(h100.stepSeconds(mixed) < h100.stepSeconds(decodes) * 1.1)
    }

    @Test func prefillIsComputeBoundAndAttentionIsQuadratic() {
        func prefill(_ n: Int, before: Int = 0) -> Double {
            var w = StepWork()
            w.addPrefill(tokens: n, contextBefore: before)
            return h100.stepSeconds(w)
        }
        let linearFlopsTime = 2 * ModelSpec.llama3_8B.activeParameters * 8192 / (HardwareSpec.h100_80GB.peakFlops * 0.6)
        #expect(prefill(8192) > linearFlopsTime)
        #expect(prefill(8192) > 4 * prefill(2048) - 0.001)           // more than linear
        #expect(prefill(1024, before: 30_000) > prefill(1024))       // chunk after a long context
        #expect(StepWork().isEmpty && h100.stepSeconds(StepWork()) == 0)
    }

    @Test func recomputeCostIsTheSlopeOfALargePrefill() {
        let cost = h100.recomputeCost
        // A compute-bound prefill: the step is the marginal costs plus the fixed overhead.
        for (n, before) in [(8192, 0), (4096, 16_384), (2048, 60_000)] {
            var w = StepWork()
            w.addPrefill(tokens: n, contextBefore: before)
            let modelled = cost.seconds(tokens: n, contextBefore: before) + h100.efficiency.stepOverheadSeconds
            #expect(abs(h100.stepSeconds(w) - modelled) <= 1e-9 * modelled, "\(n) after \(before)")
        }
        // The core's default is this model on this GPU.
        #expect(abs(cost.secondsPerToken / 2.706e-5 - 1) < 1e-3)
        #expect(abs(cost.secondsPerContextPair / 1.325e-9 - 1) < 1e-3)
        // Tensor parallelism splits both; a faster GPU lowers both.
        let tp4 = RooflineCostModel(model: .llama3_70B_TP4, hardware: .h100_80GB).recomputeCost
        let a100 = RooflineCostModel(model: .llama3_70B_TP4, hardware: .a100_80GB).recomputeCost
        #expect(a100.secondsPerToken > tp4.secondsPerToken && a100.secondsPerContextPair > tp4.secondsPerContextPair)
    }

    @Test func hardwareAndParallelismOrder() {
        var w = StepWork()
        for _ in 0..<64 { w.addDecode(context: 2000) }
        let a100 = RooflineCostModel(model: .llama3_8B, hardware: .a100_80GB).stepSeconds(w)
        let h200 = RooflineCostModel(model: .llama3_8B, hardware: .h200_141GB).stepSeconds(w)
        #expect(a100 > h100.stepSeconds(w) && h100.stepSeconds(w) > h200)
        let tp4 = RooflineCostModel(model: .llama3_70B_TP4, hardware: .h100_80GB).stepSeconds(w)
        let tp8 = RooflineCostModel(model: .llama3_70B_TP8, hardware: .h100_80GB).stepSeconds(w)
        #expect(tp4 > tp8)
        // Host transfers cost time at the host link's speed.
        var swap = w
        swap.hostTransferBytes = 1e9
        #expect(abs(h100.stepSeconds(swap) - h100.stepSeconds(w) - 1e9 / (64e9 * 0.8)) < 1e-9)
        #expect(RooflineCostModel(model: .llama3_8B, hardware: .h100_80GB).kvBytesAvailable() > 50e9)
    }

    @Test func hybridStateCostsPerSequenceNotPerToken() {
        let jamba = RooflineCostModel(model: .jambaHybrid, hardware: .h100_80GB)
        var short = StepWork(), long = StepWork()
        for _ in 0..<64 { short.addDecode(context: 100); long.addDecode(context: 4000) }
        let llamaGrowth = h100.stepSeconds(long) / h100.stepSeconds(short)
        let jambaGrowth = jamba.stepSeconds(long) / jamba.stepSeconds(short)
        #expect(jambaGrowth < llamaGrowth)
    }
}
