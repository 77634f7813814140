import KVCache
import KVChunks
import KVPlan
import Testing
@testable import KVReferenceEngine

/// Chunk reuse with selective recompute on SmolLM2: a preamble, three passages cached alone after it, then
/// a question. Ratio 1 and the prefix mode must reproduce full prefill; full reuse must not (so the
/// comparison can fail); re-rotated keys must equal the model's at the new positions.
@Suite("Chunk blending on SmolLM2", .enabled(if: TestModel.isAvailable, TestModel.missingMessage))
struct ChunkBlendTests {
    struct Setup {
        let m: TestModel.Loaded
        let preamble: [UInt32]
        let chunks: [[UInt32]]
        let question: [UInt32]
        let context: BlockKey
        var prompt: [UInt32] { preamble + chunks.joined() + question }
        var keys: [ChunkKey] { chunks.map { ChunkKey(tokens: $0, namespace: "test") } }
        let table: [BlockID]
        let pool: PagedKVPool

        init() throws {
            m = try TestModel.require()
            let t = m.tokenizer
            preamble = t.encode("<|im_start|>system\nAnswer from the passages.<|im_end|>\n<|im_start|>user\n")
            chunks = ["Paris is the capital of France and its largest city, on the Seine.\n",
                      "The Danube flows through Vienna, Bratislava, Budapest and Belgrade.\n",
                      "Mount Kilimanjaro, in Tanzania, is the highest mountain in Africa.\n"].map { t.encode($0, addBOS: false) }
            question = t.encode("Question: which river flows through Budapest?<|im_end|>\n<|im_start|>assistant\n", addBOS: false)
            context = ChunkKey(tokens: preamble, namespace: "test").bits
            let n = preamble.count + chunks.joined().count + question.count
            table = (0 ..< Int32((n + 15) / 16)).map { BlockID($0) }
            pool = PagedKVPool(config: m.model.config, blockTokens: 16, capacityBlocks: table.count)
        }

        func blender() throws -> ChunkBlender {
            let b = try ChunkBlender(model: m.model, capacityBlocks: 64)
            for (k, c) in zip(keys, chunks) { try b.cache(k, tokens: c, after: preamble, context: context) }
            return b
        }

        func fullPrefill() throws -> [Float] {
            try m.model.forward(tokens: prompt, startPosition: 0, blockTable: table, pool: pool)
        }

        /// Runs a plan of `pieces` after computing the preamble into the pool.
        func blend(_ b: ChunkBlender, _ pieces: [PromptPiece], _ selection: TokenSelection) throws -> ChunkBlender.Outcome {
            _ = try m.model.forward(tokens: preamble, startPosition: 0, blockTable: table, pool: pool)
            let plan = try ChunkPrefillPlan.build(pieces, store: &b.store, context: context, selection: selection)
            try plan.validate()
            defer { try? plan.release(from: &b.store) }
            return try b.execute(plan, prompt: prompt, pool: pool, blockTable: table)
        }

        var allChunks: [PromptPiece] {
            [PromptPiece(.cachedPrefix, tokens: preamble.count)] + zip(keys, chunks).map { PromptPiece(.chunk($0), tokens: $1.count) }
                + [PromptPiece(.fresh, tokens: question.count)]
        }
    }

    static func maxDiff(_ a: [Float], _ b: [Float]) -> Float { zip(a, b).map { abs($0 - $1) }.max()! }

    @Test("ratio 1 reproduces full prefill under every selection; full reuse does not")
    func ratioOneIsFullPrefill() throws {
        let s = try Setup()
        let full = try s.fullPrefill()
        let b = try s.blender()
        for selection in [TokenSelection.highDeviation(ratio: 1), .random(ratio: 1, seed: 3), .contextImpact(ratio: 1)] {
            let out = try s.blend(b, s.allChunks, selection)
            #expect(Self.maxDiff(out.logits, full) <= 1e-3, "\(selection)")
            // The leading chunk is exact and never recomputed; the other two are, in full.
            #expect(out.recomputedTokens == s.chunks[1].count + s.chunks[2].count)
        }
        let reuse = try s.blend(b, s.allChunks, .none)
        #expect(Self.maxDiff(reuse.logits, full) > 1e-2)
        #expect(reuse.recomputedTokens == 0 && reuse.computedTokens == s.question.count)
        #expect(OutputComparison.klDivergence(reference: full, other: reuse.logits) > 0)
    }

    @Test("the prefix mode (only the leading chunk reused) is exact")
    func prefixModeIsExact() throws {
        let s = try Setup()
        let full = try s.fullPrefill()
        let b = try s.blender()
        let pieces = [PromptPiece(.cachedPrefix, tokens: s.preamble.count), PromptPiece(.chunk(s.keys[0]), tokens: s.chunks[0].count),
                      PromptPiece(.fresh, tokens: s.prompt.count - s.preamble.count - s.chunks[0].count)]
        let out = try s.blend(b, pieces, .none)
        #expect(Self.maxDiff(out.logits, full) <= 1e-3)
        #expect(OutputComparison.klDivergence(reference: full, other: out.logits) < 1e-6)
    }

    @Test("reused keys re-rotated into the prompt equal the model's layer-0 keys there (relative 1e-5)")
    func reRotatedSpansMatchTheModel() throws {
        let s = try Setup()
        _ = try s.fullPrefill()
        let c = s.m.model.config, kvW = c.kvWidth
        func layer0Keys(_ pool: PagedKVPool) -> [Float] {
            (0 ..< s.prompt.count).flatMap { t in
                Array(UnsafeBufferPointer(start: pool.pointer(block: s.table[t / 16], layer: 0, value: false) + (t % 16) * kvW, count: kvW))
            }
        }
        let reference = layer0Keys(s.pool)
        let b = try s.blender()
        _ = try s.blend(b, s.allChunks, .none)
        let moved = layer0Keys(s.pool)
        for h in stride(from: 0, to: reference.count, by: c.headDim) {
            let scale = reference[h ..< h + c.headDim].map(abs).max()!
            let err = zip(moved[h ..< h + c.headDim], reference[h ..< h + c.headDim]).map { abs($0 - $1) }.max()!
            #expect(err <= 1e-5 * max(scale, 1e-3), "head row \(h / c.headDim)")
        }
    }

    @Test("HKVD keeps exactly its budget, recording statistics gives one share per token, bad blends throw")
    func selectionBudgetsAndErrors() throws {
        let s = try Setup()
        let full = try s.fullPrefill()
        let b = try s.blender()
        b.checkLayers = [1, 3]
        let out = try s.blend(b, s.allChunks, .highDeviation(ratio: 0.3))
        let budget = [1, 2].reduce(0) { $0 + Int((0.3 * Double(s.chunks[$1].count)).rounded(.up)) }
        #expect(out.recomputedTokens == budget && out.computedTokens == budget + s.question.count)
        #expect(out.logits.allSatisfy { $0.isFinite })
        let reuse = try s.blend(b, s.allChunks, .none)
        #expect(OutputComparison.klDivergence(reference: full, other: out.logits)
                < OutputComparison.klDivergence(reference: full, other: reuse.logits))
        let id = b.store.lookup(s.keys[1], context: s.context)!
        let impact = try #require(try b.store.tokenImpact(of: id))
        #expect(impact.count == s.chunks[1].count && impact.allSatisfy { $0 > 0 && $0 <= 1 })

        let ws = ForwardWorkspace()
        let n = s.prompt.count
        #expect(throws: EngineError.self) {   // not ascending
            try s.m.model.forwardSelected(prompt: s.prompt, positions: [n - 1, n - 2], candidates: [false, false],
                                          blockTable: s.table, pool: s.pool, workspace: ws)
        }
        #expect(throws: EngineError.self) {   // the last position as a candidate
            try s.m.model.forwardSelected(prompt: s.prompt, positions: [n - 1], candidates: [true],
                                          check: DeviationCheck(layers: [1], keep: [0]), blockTable: s.table, pool: s.pool, workspace: ws)
        }
        #expect(throws: EngineError.self) {   // check layer past the model
            try s.m.model.forwardSelected(prompt: s.prompt, positions: [n - 2, n - 1], candidates: [true, false],
                                          check: DeviationCheck(layers: [s.m.model.config.layers], keep: [1]), blockTable: s.table, pool: s.pool, workspace: ws)
        }
    }
}
