import Dispatch

/// All weights of a llama model dequantized to fp32 once, in one allocation owned by this object.
///
/// Matrices keep ggml's orientation: a weight of GGUF dims `[in, out]` is `out` rows of `in` floats,
/// row-major, so `y = W x` is `cblas_sgemv(RowMajor, NoTrans, out, in, W, in, x)`. A missing
/// `output.weight` means the head is tied to `token_embd.weight`.
/// Loading is O(parameters) (about 0.5 GB of fp32 for SmolLM2-135M), split across the cores.
/// Q4_1 and Q8_0 matrices are also kept repacked in their own format (about 85 MB), for the
/// memory-bound single-token products of decoding (`QuantizedMatrix`).
public final class LlamaWeights: @unchecked Sendable {
    // Sendable: every field is a `let`; the arena and the repacked matrices are written in `init` only.
    /// One tensor inside the arena.
    public struct Matrix: Sendable {
        public var offset: Int
        public var rows: Int
        public var cols: Int
    }

    public struct Layer: Sendable {
        public var attnNorm, wq, wk, wv, wo, ffnNorm, wGate, wUp, wDown: Matrix
    }

    public let config: LlamaConfig
    public let tokenEmbedding: Matrix
    public let outputNorm: Matrix
    public let output: Matrix
    public let layers: [Layer]
    /// Whether `output` is `tokenEmbedding` (tied head).
    public let tiedOutput: Bool
    private let arena: UnsafeMutablePointer<Float>
    public let parameterCount: Int
    /// Repacked Q4_1 / Q8_0 copies of the quantized matrices, by their fp32 offset, for decoding.
    private let quantizedByOffset: [Int: QuantizedMatrix]

    /// Dequantizes every tensor the forward pass needs from `gguf`, checking each one's shape.
    public init(gguf: GGUFFile, config: LlamaConfig) throws(GGUFError) {
        self.config = config
        var plan: [(GGUFFile.TensorInfo, Int)] = []
        var total = 0
        func place(_ name: String, rows: Int, cols: Int) throws(GGUFError) -> Matrix {
            guard let t = gguf.tensor(named: name) else { throw .missing("tensor \(name)") }
            let expected = rows == 1 ? [cols] : [cols, rows]
            guard t.dims == expected else {
                throw .malformed("tensor \(name) has dims \(t.dims), expected \(expected)")
            }
            plan.append((t, total))
            defer { total += rows * cols }
            return Matrix(offset: total, rows: rows, cols: cols)
        }
        let c = config
        tokenEmbedding = try place("token_embd.weight", rows: c.vocabSize, cols: c.embedding)
        outputNorm = try place("output_norm.weight", rows: 1, cols: c.embedding)
        if gguf.tensor(named: "output.weight") != nil {
            output = try place("output.weight", rows: c.vocabSize, cols: c.embedding)
            tiedOutput = false
        } else {
            output = tokenEmbedding
            tiedOutput = true
        }
        var layers: [Layer] = []
        for l in 0 ..< c.layers {
            let p = "blk.\(l)."
            layers.append(Layer(
                attnNorm: try place(p + "attn_norm.weight", rows: 1, cols: c.embedding),
                wq: try place(p + "attn_q.weight", rows: c.heads * c.headDim, cols: c.embedding),
                wk: try place(p + "attn_k.weight", rows: c.kvWidth, cols: c.embedding),
                wv: try place(p + "attn_v.weight", rows: c.kvWidth, cols: c.embedding),
                wo: try place(p + "attn_output.weight", rows: c.embedding, cols: c.heads * c.headDim),
                ffnNorm: try place(p + "ffn_norm.weight", rows: 1, cols: c.embedding),
                wGate: try place(p + "ffn_gate.weight", rows: c.feedForward, cols: c.embedding),
                wUp: try place(p + "ffn_up.weight", rows: c.feedForward, cols: c.embedding),
                wDown: try place(p + "ffn_down.weight", rows: c.embedding, cols: c.feedForward)))
        }
        self.layers = layers
        parameterCount = total
        arena = .allocate(capacity: total)
        // Dequantize tensors in parallel; each writes its own disjoint range of the arena.
        nonisolated(unsafe) let dst = arena
        let work = plan
        DispatchQueue.concurrentPerform(iterations: work.count) { i in
            let (info, offset) = work[i]
            gguf.withBytes(of: info) { bytes in
                Dequantize.run(info.type, from: bytes.baseAddress!, to: dst + offset, count: info.elementCount)
            }
        }
        var quantized: [Int: QuantizedMatrix] = [:]
        for (info, offset) in work where info.dims.count == 2 {
            quantized[offset] = gguf.withBytes(of: info) { bytes in
                QuantizedMatrix(type: info.type, bytes: bytes.baseAddress!, rows: info.dims[1], cols: info.dims[0])
            }
        }
        quantizedByOffset = quantized
    }

    /// The quantized copy of `m`, if its tensor is Q4_1 or Q8_0.
    @inline(__always)
    func quantized(_ m: Matrix) -> QuantizedMatrix? { quantizedByOffset[m.offset] }

    /// Bytes held by the quantized copies.
    public var quantizedByteCount: Int { quantizedByOffset.values.reduce(0) { $0 + $1.byteCount } }

    deinit { arena.deallocate() }

    /// The first float of `m`. Valid while `self` is alive; the forward pass keeps `self` alive.
    @inline(__always)
    func pointer(_ m: Matrix) -> UnsafeMutablePointer<Float> { arena + m.offset }
}
