import COpenBLAS
import Foundation
import KVCache
import KVChunks

/// CacheBlend's narrowing of the recomputed tokens: at each check layer the candidates still computed are
/// ranked by the deviation between their cached K/V (in the pool) and the K/V just recomputed, and only the
/// top `keep[i]` go on to the next layers. One check layer is CacheBlend's plain HKVD; several with
/// shrinking counts are its gradual filtering.
public struct DeviationCheck: Sendable, Equatable {
    /// Which rows the deviation compares.
    public enum Metric: String, Sendable, CaseIterable {
        case key, value
        /// The sum of both squared distances.
        case keyValue = "key-value"
    }

    /// Check layers, strictly ascending, each below the model's layer count.
    public var layers: [Int]
    /// Candidates kept after each check layer: non-increasing, as many as `layers`.
    public var keep: [Int]
    public var metric: Metric

    public init(layers: [Int], keep: [Int], metric: Metric = .value) {
        self.layers = layers; self.keep = keep; self.metric = metric
    }
}

/// What `forwardSelected` computed.
public struct SelectedForward: Sendable {
    /// The last prompt position's logits.
    public var logits: [Float]
    /// Positions computed at the last layer (ascending): the non-candidates and the candidates kept.
    public var computed: [Int]
    /// Per position given (in their order), the share of its attention that fell in `outside`, averaged
    /// over layers and heads; empty when not asked for.
    public var outsideAttention: [Float]
}

extension LlamaModel {
    /// The forward pass over a chosen set of prompt positions whose K/V is refreshed in the pool while every
    /// other position keeps the K/V already there (reused chunks, re-rotated): CacheBlend's selective
    /// recompute. Each computed token at position p attends over every position <= p of the pool, the mixed
    /// KV of cached and recomputed tokens, exactly as `forward` attends over a prefix.
    ///
    /// `positions` (ascending, distinct) are computed from layer 0; `candidates[i]` says whether position i
    /// may be dropped at a check layer of `check` (the reused tokens HKVD ranks; the question never is).
    /// With `check` nil every position is computed through every layer (random, Cache-Craft or a fixed
    /// selection, and at ratio 1 a full recompute). The last prompt position must be computed and not a
    /// candidate; its logits are returned. `recordOutside` asks for the share of attention each computed
    /// token paid to those positions (Cache-Craft's statistics, recorded when a chunk is cached; only
    /// without `check`).
    ///
    /// Cost per layer: O(n x params) projections and O(n x prompt x heads x headDim) attention for the n
    /// positions still computed, plus O(candidates x kvWidth) at a check layer; allocates the returned
    /// arrays and the ranking's scratch. Projections and attention use fp32 BLAS as `forward`'s prefill does.
    /// - Throws: `.invalidBlend` for unsorted or out-of-range positions, a mask of the wrong length, a last
    ///   position that is missing or a candidate, bad check layers or counts, or recording with a check;
    ///   `forward`'s errors for tokens, context, pool and block table. Nothing is written then.
    public func forwardSelected(prompt: [UInt32], positions: [Int], candidates: [Bool], check: DeviationCheck? = nil,
                                recordOutside: Range<Int>? = nil, blockTable: [BlockID], pool: PagedKVPool,
                                workspace: ForwardWorkspace) throws(EngineError) -> SelectedForward {
        let c = config
        let ctx = prompt.count
        guard ctx > 0, !positions.isEmpty else { throw .emptyInput }
        for t in prompt where Int(t) >= c.vocabSize { throw .tokenOutOfRange(t, vocabulary: c.vocabSize) }
        guard ctx <= c.contextLength else { throw .contextOverflow(tokens: ctx, limit: c.contextLength) }
        guard candidates.count == positions.count else { throw .invalidBlend("\(candidates.count) candidate flags for \(positions.count) positions") }
        guard positions[0] >= 0, zip(positions, positions.dropFirst()).allSatisfy({ $0 < $1 }) else {
            throw .invalidBlend("positions must be ascending, distinct and >= 0")
        }
        guard positions.last == ctx - 1, candidates.last == false else {
            throw .invalidBlend("the last prompt position must be computed and must not be a candidate")
        }
        if let check {
            let candidateCount = candidates.filter { $0 }.count
            guard check.layers.count == check.keep.count, !check.layers.isEmpty,
                  check.layers.first! >= 0, check.layers.last! < c.layers,
                  zip(check.layers, check.layers.dropFirst()).allSatisfy({ $0 < $1 }) else {
                throw .invalidBlend("check layers must be strictly ascending in 0..<\(c.layers), one count each")
            }
            guard check.keep.allSatisfy({ (0 ... candidateCount).contains($0) }),
                  zip(check.keep, check.keep.dropFirst()).allSatisfy({ $0 >= $1 }) else {
                throw .invalidBlend("kept counts must be non-increasing within 0...\(candidateCount)")
            }
            guard recordOutside == nil else { throw .invalidBlend("attention is recorded only without a check") }
        }
        if let r = recordOutside, r.lowerBound < 0 || r.upperBound > ctx { throw .invalidBlend("recorded range \(r) outside the prompt") }
        let bt = pool.blockTokens
        _ = try checkTable(blockTable, pool: pool, positions: ctx)

        var n = positions.count
        workspace.reserve(tokens: n, context: ctx, config: c)
        let s = workspace, w = weights
        let E = c.embedding, kvW = c.kvWidth, hd = c.headDim, H = c.heads, qW = c.heads * c.headDim
        let x = s.x, h = s.h, q = s.q, k = s.k, v = s.v, rotations = s.rotations
        var pos = positions, cand = candidates
        var outside = [Float](repeating: 0, count: recordOutside == nil ? 0 : n)
        let pairs = c.ropeDims / 2
        for i in 0 ..< n {
            for j in 0 ..< pairs {
                let angle = Double(pos[i]) * pow(Double(c.ropeBase), -2 * Double(j) / Double(c.ropeDims))
                rotations[2 * (i * pairs + j)] = Float(cos(angle))
                rotations[2 * (i * pairs + j) + 1] = Float(sin(angle))
            }
        }
        let emb = w.pointer(w.tokenEmbedding)
        for i in 0 ..< n { (x + i * E).update(from: emb + Int(prompt[pos[i]]) * E, count: E) }
        func linear(_ a: UnsafeMutablePointer<Float>, _ m: LlamaWeights.Matrix, _ out: UnsafeMutablePointer<Float>, _ accumulate: Bool) {
            Self.matmulT(a, w.pointer(m), out, rows: n, inWidth: m.cols, outWidth: m.rows, accumulate: accumulate)
        }
        var nextCheck = 0
        var deviation: [Float] = []
        for l in 0 ..< c.layers {
            let L = w.layers[l]
            Self.rmsNorm(x, w.pointer(L.attnNorm), h, rows: n, width: E, eps: c.rmsEpsilon)
            linear(h, L.wq, q, false)
            linear(h, L.wk, k, false)
            linear(h, L.wv, v, false)
            for i in 0 ..< n {
                let r = rotations + 2 * i * pairs
                Self.rope(q + i * qW, heads: H, headDim: hd, pairs: pairs, rotations: r)
                Self.rope(k + i * kvW, heads: c.kvHeads, headDim: hd, pairs: pairs, rotations: r)
            }
            let checking = check.map { nextCheck < $0.layers.count && $0.layers[nextCheck] == l } ?? false
            if checking, let check {
                // Deviation of each candidate's recomputed row from the cached one still in the pool.
                deviation = [Float](repeating: -.infinity, count: n)
                for i in 0 ..< n where cand[i] {
                    let block = blockTable[pos[i] / bt], slot = pos[i] % bt
                    var d: Float = 0
                    if check.metric != .value {
                        d += RecomputeSelection.deviation(pool.pointer(block: block, layer: l, value: false) + slot * kvW, k + i * kvW, count: kvW)
                    }
                    if check.metric != .key {
                        d += RecomputeSelection.deviation(pool.pointer(block: block, layer: l, value: true) + slot * kvW, v + i * kvW, count: kvW)
                    }
                    deviation[i] = d
                }
            }
            storeKVAndRegroupQueries(layer: l, tokens: n, pool: pool, workspace: s) { i in (blockTable[pos[i] / bt], pos[i] % bt) }
            attend(layer: l, tokens: n, context: ctx, pool: pool, workspace: s, kernels: false, block: { blockTable[$0] }) { scores, rows in
                // Row r is token r % n at position pos[r % n]: it sees positions up to its own.
                for r in 0 ..< rows {
                    let row = scores + r * ctx
                    Self.causalSoftmax(row, rows: 1, tokens: 1, context: ctx, start: pos[r % n])
                    if let range = recordOutside {
                        var mass: Float = 0
                        for j in range where j <= pos[r % n] { mass += row[j] }
                        outside[r % n] += mass
                    }
                }
            }
            layerTail(L, tokens: n, workspace: s, linear: linear)

            if checking, let check {
                // Keep the non-candidates and the top candidates; compact their rows in order.
                let kept = Set(RecomputeSelection.topScores(deviation, budget: check.keep[nextCheck]))
                var m = 0
                for i in 0 ..< n where !cand[i] || kept.contains(i) {
                    if m != i {
                        (x + m * E).update(from: x + i * E, count: E)
                        (rotations + 2 * m * pairs).update(from: rotations + 2 * i * pairs, count: 2 * pairs)
                        pos[m] = pos[i]
                        cand[m] = cand[i]
                    }
                    m += 1
                }
                n = m
                pos.removeLast(pos.count - n)
                cand.removeLast(cand.count - n)
                nextCheck += 1
            }
        }
        var logits = [Float](repeating: 0, count: c.vocabSize)
        let last = x + (n - 1) * E
        Self.rmsNorm(last, w.pointer(w.outputNorm), h, rows: 1, width: E, eps: c.rmsEpsilon)
        logits.withUnsafeMutableBufferPointer { out in
            cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(c.vocabSize), Int32(E), 1, w.pointer(w.output), Int32(E),
                        h, 1, 0, out.baseAddress!, 1)
        }
        let norm = Float(c.layers * H)
        return SelectedForward(logits: logits, computed: pos, outsideAttention: outside.map { $0 / norm })
    }
}
