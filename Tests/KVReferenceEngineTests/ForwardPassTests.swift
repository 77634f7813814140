import KVCache
import Testing
@testable import KVReferenceEngine

@Suite("llama forward pass", .enabled(if: TestModel.isAvailable, TestModel.missingMessage))
struct ForwardPassTests {
    /// The fixtures come from a float64 numpy pass over the same dequantized weights, rounded to 5
    /// decimals. Ours runs in fp32 (BLAS sgemm with its own summation order, fp32 KV), so logits of
    /// magnitude 15-35 differ by rounding: 1.5e-5 at most when measured. 1e-2 leaves room for other
    /// BLAS builds and CPUs while still catching any real error (a wrong RoPE pair layout or head
    /// mapping moves logits by whole units; llama.cpp's 8-bit activations move them by ~0.3).
    static let tolerance: Float = 1e-2

    @Test("top-5 next-token logits match the reference for three prompts")
    func matchesReference() throws {
        let m = try TestModel.require()
        let fixture = try Fixtures.load("logits.json", as: Fixtures.LogitsFile.self)
        #expect(fixture.prompts.count == 3)
        for p in fixture.prompts {
            #expect(m.tokenizer.encode(p.prompt) == p.ids)
            let pool = PagedKVPool(config: m.model.config, blockTokens: 16, capacityBlocks: (p.ids.count + 15) / 16)
            let logits = try m.model.forward(tokens: p.ids, startPosition: 0,
                                             blockTable: (0 ..< Int32(pool.capacityBlocks)).map { $0 }, pool: pool)
            for e in p.top5 {
                #expect(abs(logits[e.id] - e.logit) <= Self.tolerance, "prompt \(p.prompt.prefix(20).debugDescription) token \(e.id)")
            }
            let ours = logits.indices.sorted { logits[$0] > logits[$1] }.prefix(5)
            #expect(Array(ours) == p.top5.map(\.id))
        }
    }

    @Test("block size, scattered block ids and token-at-a-time decoding do not change logits")
    func pagingIsTransparent() throws {
        let m = try TestModel.require()
        let ids = m.tokenizer.encode("Paged attention reads keys and values through a block table.")
        let reference = try m.model.forward(tokens: ids, startPosition: 0, blockTable: [0, 1],
                                            pool: PagedKVPool(config: m.model.config, blockTokens: 16, capacityBlocks: 2))
        // Block size 5, blocks scattered in a larger pool, the prompt fed in three uneven chunks.
        let pool = PagedKVPool(config: m.model.config, blockTokens: 5, capacityBlocks: 12)
        let table: [BlockID] = [11, 3, 7, 0, 9, 2, 5, 8, 1, 10, 4, 6]
        let cuts = [0, 4, 5, ids.count]
        var logits: [Float] = []
        for (a, b) in zip(cuts, cuts.dropFirst()) {
            logits = try m.model.forward(tokens: Array(ids[a ..< b]), startPosition: a, blockTable: table, pool: pool)
        }
        let diff = zip(reference, logits).map { abs($0 - $1) }.max() ?? .infinity
        #expect(diff <= 1e-4, "max abs difference \(diff)")
    }

    @Test("bad input is refused before anything is written")
    func refusesBadInput() throws {
        let m = try TestModel.require()
        let pool = PagedKVPool(config: m.model.config, blockTokens: 16, capacityBlocks: 1)
        #expect(throws: EngineError.tokenOutOfRange(49152, vocabulary: 49152)) {
            try m.model.forward(tokens: [49152], startPosition: 0, blockTable: [0], pool: pool)
        }
        #expect(throws: EngineError.badBlockTable("1 blocks cover fewer than 17 positions")) {
            try m.model.forward(tokens: [1], startPosition: 16, blockTable: [0], pool: pool)
        }
        #expect(throws: EngineError.badBlockTable("block 4 is outside the pool of 1")) {
            try m.model.forward(tokens: [1], startPosition: 0, blockTable: [4], pool: pool)
        }
        #expect(throws: EngineError.emptyInput) {
            try m.model.forward(tokens: [], startPosition: 0, blockTable: [0], pool: pool)
        }
        #expect(throws: EngineError.contextOverflow(tokens: 8193, limit: 8192)) {
            try m.model.forward(tokens: [1], startPosition: 8192, blockTable: [0], pool: pool)
        }
        pool.withBlockBytes(0) { bytes in #expect(bytes.allSatisfy { $0 == 0 }) }
    }
}

@Suite("quantized decode products", .enabled(if: TestModel.isAvailable, TestModel.missingMessage))
struct DecodeModeTests {
    @Test("single-token products from Q4_1/Q8_0 weights match the fp32 BLAS path within rounding",
          .enabled(if: LlamaModel.quantizedDecodeEnabled, "quantized decoding is used in optimized builds only"))
    func decodeMatchesPrefillPath() throws {
        let m = try TestModel.require()
        let ids = m.tokenizer.encode("Decoding reads quantized weights")
        let pools = (0 ..< 2).map { _ in PagedKVPool(config: m.model.config, blockTokens: 16, capacityBlocks: 1) }
        var logits: [[Float]] = []
        for (pool, mode) in zip(pools, [ForwardMode.prefill, .decode]) {
            var last: [Float] = []
            for (i, t) in ids.enumerated() {
                last = try m.model.forward(tokens: [t], startPosition: i, blockTable: [0], pool: pool, mode: mode)
            }
            logits.append(last)
        }
        let diff = zip(logits[0], logits[1]).map { abs($0 - $1) }.max()!
        #expect(diff <= 1e-3, "max abs difference \(diff)")
        #expect(diff > 0, "the decode path was not taken")
    }

    @Test("the quantized row products equal the dequantized dot products")
    func kernelMatchesDequantized() throws {
        let m = try TestModel.require()
        let w = m.model.weights
        for matrix in [w.layers[0].wq, w.layers[3].wDown, w.output] {
            let q = try #require(w.quantized(matrix))
            var rng = SplitMix64(seed: 3)
            let x = (0 ..< matrix.cols).map { _ in Float(Int(rng.next() % 2001) - 1000) / 1000 }
            var sums = (0 ..< matrix.cols / 32).map { b in x[32 * b ..< 32 * b + 32].reduce(0, +) }
            // Sampled rows only: unoptimized SIMD code is slow in debug builds.
            let rows = Array(stride(from: 0, to: matrix.rows, by: max(1, matrix.rows / 24)))
            var y = [Float](repeating: 1, count: matrix.rows)
            x.withUnsafeBufferPointer { xp in
                y.withUnsafeMutableBufferPointer { yp in
                    sums.withUnsafeMutableBufferPointer { sp in
                        for r in rows {
                            q.multiply(xp.baseAddress!, blockSums: sp.baseAddress!, into: yp.baseAddress!, rows: r ..< r + 1, accumulate: false)
                        }
                    }
                }
            }
            let dense = w.pointer(matrix)
            for r in rows {
                var exact: Double = 0
                for j in 0 ..< matrix.cols { exact += Double(dense[r * matrix.cols + j]) * Double(x[j]) }
                #expect(abs(Double(y[r]) - exact) <= 1e-4 * max(1, abs(exact)), "row \(r)")
            }
        }
    }
}
