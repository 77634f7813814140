import KVCache
import CKernels
import COpenBLAS
import Foundation

/// The llama forward pass (RMSNorm, RoPE, grouped-query attention, SwiGLU, output head) over K/V kept
/// in a `PagedKVPool` and addressed through a block table.
///
/// `forward` computes `tokens` at positions `startPosition ..< startPosition + n`, writes their K/V into
/// the pool slots the block table names, attends over every position `< startPosition + n` read back from
/// the pool, and returns the last token's logits. Positions before `startPosition` are not recomputed:
/// their K/V must already be in the pool (a prefix hit).
///
/// Matrix work is OpenBLAS (`cblas_sgemm` / `cblas_sgemv`), except single decode tokens, which use the
/// C kernels of `CKernels` (quantized products, attention loops); per layer attention costs
/// O(n x (start + n) x heads x headDim) in a few calls per block, projections O(n x params).
/// The model is immutable and may be shared by threads; each caller brings its own `ForwardWorkspace`
/// (scratch buffers grown only when a larger batch arrives, so steady-state decoding allocates nothing).
public final class LlamaModel: Sendable {
    public let config: LlamaConfig
    public let weights: LlamaWeights
    /// Inverse rotary frequencies `base^(-2i / ropeDims)`, in Double for accurate angles.
    private let inverseFrequencies: [Double]

    /// Whether `.decode` uses the decode kernels (quantized products, attention loops; the C target
    /// `CKernels`). Off in debug builds, where C builds at -O0 and the AVX2 kernels run about 100x
    /// slower (decode then uses BLAS like prefill); the kernels are still unit-tested there.
    #if DEBUG
    public static let quantizedDecodeEnabled = false
    #else
    public static let quantizedDecodeEnabled = true
    #endif

    public init(weights: LlamaWeights) {
        self.config = weights.config
        self.weights = weights
        let c = weights.config
        inverseFrequencies = (0 ..< c.ropeDims / 2).map { pow(Double(c.ropeBase), -2 * Double($0) / Double(c.ropeDims)) }
    }

    /// Loads the model in `gguf` (configuration and dequantized weights).
    public convenience init(gguf: GGUFFile) throws(GGUFError) {
        let config = try LlamaConfig(gguf: gguf)
        self.init(weights: try LlamaWeights(gguf: gguf, config: config))
    }

    /// Computes `tokens` at positions from `startPosition` and writes the last token's logits
    /// (`vocabSize` floats) to `logits`.
    ///
    /// - Parameters:
    ///   - blockTable: block ids covering positions `0 ..< startPosition + tokens.count`
    ///     (position p lives in `blockTable[p / pool.blockTokens]`, slot `p % pool.blockTokens`).
    ///   - logits: at least `vocabSize` floats.
    ///   - workspace: the caller's scratch buffers (one workspace per thread).
    ///   - mode: `.decode` computes single-token products from the quantized weights (memory-bound,
    ///     about 6x fewer bytes) and attention with plain loops; `.prefill` uses fp32 sgemm. Both compute the same function; they
    ///     differ by fp32 rounding (~1e-6 relative), so runs compared for exactness use the same mode
    ///     for the same token.
    /// - Throws: `EngineError` for out-of-range tokens, context overflow or a short/invalid block table;
    ///   nothing is written then.
    public func forward(tokens: UnsafeBufferPointer<UInt32>, startPosition: Int,
                        blockTable: UnsafeBufferPointer<BlockID>, pool: PagedKVPool,
                        logits: UnsafeMutableBufferPointer<Float>, workspace: ForwardWorkspace,
                        mode: ForwardMode = .prefill) throws(EngineError) {
        let c = config
        let n = tokens.count
        guard n > 0 else { throw .emptyInput }
        guard startPosition >= 0 else { throw .badBlockTable("negative start position") }
        for t in tokens where Int(t) >= c.vocabSize { throw .tokenOutOfRange(t, vocabulary: c.vocabSize) }
        let ctx = startPosition + n
        guard ctx <= c.contextLength else { throw .contextOverflow(tokens: ctx, limit: c.contextLength) }
        let bt = pool.blockTokens
        _ = try checkTable(blockTable, pool: pool, positions: ctx)
        guard logits.count >= c.vocabSize else { throw .badBlockTable("logits buffer smaller than the vocabulary") }

        workspace.reserve(tokens: n, context: ctx, config: c)
        let s = workspace
        let E = c.embedding, kvW = c.kvWidth, hd = c.headDim, H = c.heads
        let qW = H * hd
        let w = weights
        let x = s.x, h = s.h, q = s.q, k = s.k, v = s.v
        let rotations = s.rotations
        let decodeKernels = mode == .decode && n == 1 && Self.quantizedDecodeEnabled
        let workers = decodeKernels ? s.decodeWorkers(threads: BLASThreads.count) : nil
        /// out (+)= a W^T through the quantized copy when decoding, else BLAS.
        func linear(_ a: UnsafeMutablePointer<Float>, _ m: LlamaWeights.Matrix, _ out: UnsafeMutablePointer<Float>,
                    accumulate: Bool) {
            if decodeKernels, let qm = w.quantized(m) {
                qm.multiply(a, into: out, accumulate: accumulate, blockSums: s.blockSums, workers: workers)
            } else {
                Self.matmulT(a, w.pointer(m), out, rows: n, inWidth: m.cols, outWidth: m.rows, accumulate: accumulate)
            }
        }
        // cos/sin of every (token, pair) once per call; every layer reuses them.
        let pairs = inverseFrequencies.count
        for i in 0 ..< n {
            for j in 0 ..< pairs {
                let angle = Double(startPosition + i) * inverseFrequencies[j]
                rotations[2 * (i * pairs + j)] = Float(cos(angle))
                rotations[2 * (i * pairs + j) + 1] = Float(sin(angle))
            }
        }

        // Embedding rows.
        let emb = w.pointer(w.tokenEmbedding)
        for i in 0 ..< n { (x + i * E).update(from: emb + Int(tokens[i]) * E, count: E) }
        for l in 0 ..< c.layers {
            let L = w.layers[l]
            Self.rmsNorm(x, w.pointer(L.attnNorm), h, rows: n, width: E, eps: c.rmsEpsilon)
            linear(h, L.wq, q, accumulate: false)
            linear(h, L.wk, k, accumulate: false)
            linear(h, L.wv, v, accumulate: false)
            for i in 0 ..< n {
                let r = rotations + 2 * i * pairs
                Self.rope(q + i * qW, heads: H, headDim: hd, pairs: pairs, rotations: r)
                Self.rope(k + i * kvW, heads: c.kvHeads, headDim: hd, pairs: pairs, rotations: r)
            }
            storeKVAndRegroupQueries(layer: l, tokens: n, pool: pool, workspace: s) { i in
                let p = startPosition + i
                return (blockTable[p / bt], p % bt)
            }
            attend(layer: l, tokens: n, context: ctx, pool: pool, workspace: s, kernels: decodeKernels, block: { blockTable[$0] }) { scores, rows in
                Self.causalSoftmax(scores, rows: rows, tokens: n, context: ctx, start: startPosition)
            }
            layerTail(L, tokens: n, workspace: s, linear: linear)
        }
        // Final norm and head for the last token only.
        let last = x + (n - 1) * E
        Self.rmsNorm(last, w.pointer(w.outputNorm), h, rows: 1, width: E, eps: c.rmsEpsilon)
        if decodeKernels, let qm = w.quantized(w.output) {
            qm.multiply(h, into: logits.baseAddress!, accumulate: false, blockSums: s.blockSums, workers: workers)
        } else {
            cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(c.vocabSize), Int32(E), 1, w.pointer(w.output), Int32(E),
                        h, 1, 0, logits.baseAddress!, 1)
        }
    }

    /// Convenience: the last token's logits as a new array (allocates; for tests and one-off calls).
    public func forward(tokens: [UInt32], startPosition: Int, blockTable: [BlockID],
                        pool: PagedKVPool, workspace: ForwardWorkspace = ForwardWorkspace(),
                        mode: ForwardMode = .prefill) throws(EngineError) -> [Float] {
        var out = [Float](repeating: 0, count: config.vocabSize)
        try tokens.withUnsafeBufferPointer { (t) throws(EngineError) in
            try blockTable.withUnsafeBufferPointer { (table) throws(EngineError) in
                try out.withUnsafeMutableBufferPointer { (o) throws(EngineError) in
                    try forward(tokens: t, startPosition: startPosition, blockTable: table, pool: pool, logits: o,
                                workspace: workspace, mode: mode)
                }
            }
        }
        return out
    }

    /// Checks that `pool` has the model's shape and `table` names blocks of it for positions
    /// `0 ..< positions`; returns how many blocks those are. O(blocks).
    func checkTable(_ table: some Collection<BlockID>, pool: PagedKVPool, positions: Int) throws(EngineError) -> Int {
        let c = config
        guard pool.layers == c.layers, pool.kvHeads == c.kvHeads, pool.headDim == c.headDim else {
            throw .badBlockTable("pool shape does not match the model")
        }
        let needed = (positions + pool.blockTokens - 1) / pool.blockTokens
        guard table.count >= needed else { throw .badBlockTable("\(table.count) blocks cover fewer than \(positions) positions") }
        for b in table.prefix(needed) where !pool.contains(b) {
            throw .badBlockTable("block \(b) is outside the pool of \(pool.capacityBlocks)")
        }
        return needed
    }

    /// Grouped-query attention of the `n` queries in the workspace's `qh` over positions `0 ..< ctx` of
    /// layer `l` in the pool, into `attn`: per KV group, scores = scale x Q_g K^T, one sgemm (or, with
    /// `kernels`, one decode-kernel call) per block straight from the pool; `softmax(scores, rows)` masks and
    /// normalizes them (rows = group heads x n, row r is token r % n); then og = P V_g accumulated block by
    /// block and scattered to `attn`. O(n x ctx x heads x headDim).
    @inline(__always)
    func attend(layer l: Int, tokens n: Int, context ctx: Int, pool: PagedKVPool, workspace s: ForwardWorkspace,
                kernels: Bool, block: (Int) -> BlockID, softmax: (UnsafeMutablePointer<Float>, Int) -> Void) {
        let c = config, hd = c.headDim, kvW = c.kvWidth, bt = pool.blockTokens
        let rows = c.groupSize * n, blocks = (ctx + bt - 1) / bt
        let scale = 1 / Float(Double(hd).squareRoot())
        let scores = s.scores, og = s.og
        for g in 0 ..< c.kvHeads {
            let a = s.qh + g * rows * hd
            for b in 0 ..< blocks {
                let t0 = b * bt, cnt = min(bt, ctx - t0)
                let kb = pool.pointer(block: block(b), layer: l, value: false) + g * hd
                if kernels {
                    kv_attention_scores(a, rows, hd, kb, kvW, cnt, scale, scores + t0, ctx)
                } else {
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(rows), Int32(cnt), Int32(hd),
                                scale, a, Int32(hd), kb, Int32(kvW), 0, scores + t0, Int32(ctx))
                }
            }
            softmax(scores, rows)
            for b in 0 ..< blocks {
                let t0 = b * bt, cnt = min(bt, ctx - t0)
                let vb = pool.pointer(block: block(b), layer: l, value: true) + g * hd
                if kernels {
                    kv_attention_values(scores + t0, rows, ctx, vb, kvW, cnt, hd, og, b != 0)
                } else {
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(rows), Int32(hd), Int32(cnt),
                                1, scores + t0, Int32(ctx), vb, Int32(kvW), b == 0 ? 0 : 1, og, Int32(hd))
                }
            }
            Self.scatterHeads(og, into: s.attn, group: g, tokens: n, config: c)
        }
    }

    /// The end of layer `L` once attention has filled `attn`: the out-projection added to the residual
    /// `x`, then the SwiGLU block added to it. `linear(a, m, out, accumulate)` is the caller's product.
    @inline(__always)
    func layerTail(_ L: LlamaWeights.Layer, tokens n: Int, workspace s: ForwardWorkspace,
                   linear: (UnsafeMutablePointer<Float>, LlamaWeights.Matrix, UnsafeMutablePointer<Float>, Bool) -> Void) {
        linear(s.attn, L.wo, s.x, true)
        Self.rmsNorm(s.x, weights.pointer(L.ffnNorm), s.h, rows: n, width: config.embedding, eps: config.rmsEpsilon)
        linear(s.h, L.wGate, s.gate, false)
        linear(s.h, L.wUp, s.up, false)
        Self.swiglu(s.gate, s.up, count: n * config.feedForward)
        linear(s.gate, L.wDown, s.x, true)
    }

    /// Writes the `n` new tokens' K and V (rows of the workspace's `k`, `v`) into the pool slots `slot(i)`
    /// names for layer `l`, then regroups the queries head-major, `qh[head][token][dim]`, so that one KV
    /// head's group is one matrix. O(n x heads x headDim).
    @inline(__always)
    func storeKVAndRegroupQueries(layer l: Int, tokens n: Int, pool: PagedKVPool, workspace s: ForwardWorkspace,
                                  slot: (Int) -> (block: BlockID, slot: Int)) {
        let kvW = config.kvWidth, hd = config.headDim, qW = config.heads * hd
        for i in 0 ..< n {
            let (block, t) = slot(i)
            (pool.pointer(block: block, layer: l, value: false) + t * kvW).update(from: s.k + i * kvW, count: kvW)
            (pool.pointer(block: block, layer: l, value: true) + t * kvW).update(from: s.v + i * kvW, count: kvW)
        }
        for i in 0 ..< n {
            for hh in 0 ..< config.heads { (s.qh + (hh * n + i) * hd).update(from: s.q + i * qW + hh * hd, count: hd) }
        }
    }

    // MARK: Kernels

    /// Copies one KV group's attention output `og` (group heads x tokens rows of headDim) to the token-major
    /// `attn` (tokens x heads x headDim). O(group heads x tokens x headDim).
    @inline(__always)
    static func scatterHeads(_ og: UnsafeMutablePointer<Float>, into attn: UnsafeMutablePointer<Float>, group g: Int,
                             tokens n: Int, config c: LlamaConfig) {
        let hd = c.headDim, qW = c.heads * hd
        for r in 0 ..< c.groupSize * n {
            let head = g * c.groupSize + r / n, i = r % n
            (attn + i * qW + head * hd).update(from: og + r * hd, count: hd)
        }
    }

    /// `out[r] = in[r] * w / rms(in[r])` for each of `rows` rows. O(rows x width).
    static func rmsNorm(_ input: UnsafeMutablePointer<Float>, _ weight: UnsafeMutablePointer<Float>,
                        _ out: UnsafeMutablePointer<Float>, rows: Int, width: Int, eps: Float) {
        for r in 0 ..< rows {
            let src = input + r * width, dst = out + r * width
            let sumSquares = cblas_sdot(Int32(width), src, 1, src, 1)
            let inv = 1 / (sumSquares / Float(width) + eps).squareRoot()
            for j in 0 ..< width { dst[j] = src[j] * inv * weight[j] }
        }
    }

    /// `out (rows x outWidth) (+)= a (rows x inWidth) * W^T` with `W` row-major `outWidth x inWidth`.
    @inline(__always)
    static func matmulT(_ a: UnsafeMutablePointer<Float>, _ w: UnsafeMutablePointer<Float>,
                        _ out: UnsafeMutablePointer<Float>, rows: Int, inWidth: Int, outWidth: Int, accumulate: Bool) {
        if rows == 1 {
            cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(outWidth), Int32(inWidth), 1, w, Int32(inWidth),
                        a, 1, accumulate ? 1 : 0, out, 1)
        } else {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(rows), Int32(outWidth), Int32(inWidth),
                        1, a, Int32(inWidth), w, Int32(inWidth), accumulate ? 1 : 0, out, Int32(outWidth))
        }
    }

    /// Rotates adjacent pairs `(2i, 2i+1)` of the first `2 x pairs` dims of each head by the angle
    /// `position x base^(-2i/ropeDims)`, given as `rotations[2i] = cos`, `rotations[2i+1] = sin`.
    /// This is ggml's "normal" RoPE, the layout GGUF llama files are converted for (the converter
    /// permutes Q/K rows from Hugging Face's split-half layout). O(heads x headDim).
    @inline(__always)
    static func rope(_ v: UnsafeMutablePointer<Float>, heads: Int, headDim: Int, pairs: Int,
                     rotations: UnsafeMutablePointer<Float>) {
        for hh in 0 ..< heads {
            let head = v + hh * headDim
            for i in 0 ..< pairs {
                let cs = rotations[2 * i], sn = rotations[2 * i + 1]
                let a = head[2 * i], b = head[2 * i + 1]
                head[2 * i] = a * cs - b * sn
                head[2 * i + 1] = a * sn + b * cs
            }
        }
    }

    /// Row-wise softmax of `scores` (rows x context, rows = group heads x tokens) where the query of
    /// row r is at position `start + r % tokens` and sees positions up to and including itself; the
    /// masked tail of each row is zeroed. O(rows x context).
    static func causalSoftmax(_ scores: UnsafeMutablePointer<Float>, rows: Int, tokens: Int, context: Int, start: Int) {
        for r in 0 ..< rows {
            let row = scores + r * context
            let visible = start + r % tokens + 1
            var m = -Float.infinity
            for j in 0 ..< visible where row[j] > m { m = row[j] }
            var sum: Float = 0
            for j in 0 ..< visible {
                let e = expf(row[j] - m)
                row[j] = e
                sum += e
            }
            let inv = 1 / sum
            for j in 0 ..< visible { row[j] *= inv }
            for j in visible ..< context { row[j] = 0 }
        }
    }

    /// `gate[i] = silu(gate[i]) * up[i]`. O(count).
    static func swiglu(_ gate: UnsafeMutablePointer<Float>, _ up: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0 ..< count {
            let g = gate[i]
            gate[i] = g / (1 + expf(-g)) * up[i]
        }
    }
}

/// How `forward` computes its matrix products (see `forward`).
public enum ForwardMode: Sendable {
    /// fp32 BLAS for every product: prompts (any number of tokens).
    case prefill
    /// Single generated tokens: products from the quantized weights, attention in C loops.
    case decode
}

/// The forward pass's working buffers, sized for the largest batch and context seen so far and
/// freed with the workspace. One per thread (an engine owns one); not thread-safe, so not `Sendable`.
public final class ForwardWorkspace {
    private(set) var tokens = 0
    private(set) var context = 0
    private(set) var x = UnsafeMutablePointer<Float>.allocate(capacity: 1)
    private(set) var h = UnsafeMutablePointer<Float>.allocate(capacity: 1)
    private(set) var q = UnsafeMutablePointer<Float>.allocate(capacity: 1)
    private(set) var k = UnsafeMutablePointer<Float>.allocate(capacity: 1)
    private(set) var v = UnsafeMutablePointer<Float>.allocate(capacity: 1)
    private(set) var qh = UnsafeMutablePointer<Float>.allocate(capacity: 1)
    private(set) var scores = UnsafeMutablePointer<Float>.allocate(capacity: 1)
    private(set) var og = UnsafeMutablePointer<Float>.allocate(capacity: 1)
    private(set) var attn = UnsafeMutablePointer<Float>.allocate(capacity: 1)
    private(set) var gate = UnsafeMutablePointer<Float>.allocate(capacity: 1)
    private(set) var up = UnsafeMutablePointer<Float>.allocate(capacity: 1)
    private(set) var rotations = UnsafeMutablePointer<Float>.allocate(capacity: 1)
    private(set) var blockSums = UnsafeMutablePointer<Float>.allocate(capacity: 1)
    /// Threads for the decode products, started on first use and restarted when the count changes.
    private var workers: DecodeWorkers?
    private var workersRequested = 1

    public init() {}

    deinit {
        for p in [x, h, q, k, v, qh, scores, og, attn, gate, up, rotations, blockSums] { p.deallocate() }
    }

    /// The decode workers for `threads` threads (nil for one thread, or if threads cannot be started).
    func decodeWorkers(threads: Int) -> DecodeWorkers? {
        if threads != workersRequested {
            workers = nil   // stops the old threads first
            workers = DecodeWorkers(threads: threads)
            workersRequested = threads
        }
        return workers
    }

    /// Grows the buffers (never shrinks) to hold `tokens` new tokens over `context` positions.
    /// Amortized O(1) allocations: sizes at least double when they grow.
    func reserve(tokens n: Int, context ctx: Int, config c: LlamaConfig) {
        if n > tokens {
            tokens = max(n, 2 * tokens)
            let t = tokens
            func grow(_ p: inout UnsafeMutablePointer<Float>, _ count: Int) {
                p.deallocate(); p = .allocate(capacity: count); p.initialize(repeating: 0, count: count)
            }
            grow(&x, t * c.embedding); grow(&h, t * c.embedding)
            grow(&q, t * c.heads * c.headDim); grow(&k, t * c.kvWidth); grow(&v, t * c.kvWidth)
            grow(&qh, t * c.heads * c.headDim); grow(&og, t * c.groupSize * c.headDim)
            grow(&attn, t * c.heads * c.headDim); grow(&gate, t * c.feedForward); grow(&up, t * c.feedForward)
            grow(&rotations, t * c.ropeDims)
            grow(&blockSums, (max(c.embedding, c.feedForward, c.heads * c.headDim) + 31) / 32)
            context = 0   // the scores buffer's size depends on tokens too
        }
        if ctx > context {
            context = max(ctx, 2 * context)
            scores.deallocate()
            let count = tokens * c.groupSize * context
            scores = .allocate(capacity: count)
            scores.initialize(repeating: 0, count: count)
        }
    }
}
