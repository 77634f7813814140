import CKernels
import Foundation
import KVCache
import Testing
@testable import KVReferenceEngine

/// A random Q4_1 or Q8_0 matrix in GGUF block bytes, with its dequantized fp32 copy from `Dequantize`
/// (the reference the kernels are held to) and its repacked `QuantizedMatrix`.
private struct RandomQuantizedMatrix {
    let rows: Int
    let cols: Int
    let dense: [Float]
    let packed: QuantizedMatrix

    init(type: GGMLType, rows: Int, cols: Int, rng: inout SplitMix64) {
        let blockBytes = type == .q4_1 ? 20 : 34
        let blocks = rows * cols / 32
        var bytes = [UInt8](repeating: 0, count: blocks * blockBytes)
        /// An f16 bit pattern of magnitude 2^-8 ..< 2^-1, so that scales vary over the matrix.
        func half(negative: Bool, _ rng: inout SplitMix64) -> UInt16 {
            let exponent = UInt16(7 + rng.next() % 7), mantissa = UInt16(rng.next() % 1024)
            return (negative ? 0x8000 : 0) | exponent << 10 | mantissa
        }
        for b in 0 ..< blocks {
            let o = b * blockBytes
            let d = half(negative: rng.next() % 4 == 0, &rng)
            bytes[o] = UInt8(d & 0xFF); bytes[o + 1] = UInt8(d >> 8)
            var q = o + 2
            if type == .q4_1 {
                let m = half(negative: true, &rng)
                bytes[o + 2] = UInt8(m & 0xFF); bytes[o + 3] = UInt8(m >> 8)
                q = o + 4
            }
            for j in q ..< o + blockBytes { bytes[j] = UInt8(truncatingIfNeeded: rng.next()) }
        }
        var dense = [Float](repeating: 0, count: rows * cols)
        var packed: QuantizedMatrix?
        bytes.withUnsafeBytes { raw in
            dense.withUnsafeMutableBufferPointer { Dequantize.run(type, from: raw.baseAddress!, to: $0.baseAddress!, count: rows * cols) }
            packed = QuantizedMatrix(type: type, bytes: raw.baseAddress!, rows: rows, cols: cols)
        }
        self.rows = rows
        self.cols = cols
        self.dense = dense
        self.packed = packed!
    }

    /// Each row's product with `x`, exactly (Double) from the dequantized weights.
    func reference(_ x: [Float]) -> [ExactSum] {
        (0 ..< rows).map { r in
            var sum = ExactSum()
            for j in 0 ..< cols { sum.add(dense[r * cols + j], x[j]) }
            return sum
        }
    }
}

/// Shapes with rows not a multiple of the four-row tile and widths from one block up.
private let shapes: [(rows: Int, cols: Int)] = [(1, 32), (3, 96), (6, 160), (37, 576), (130, 1536), (259, 64)]

@Suite("quantized decode kernels")
struct QuantizedKernelTests {
    @Test("the dispatched kernels equal dequantise-then-dot, on any thread count", arguments: [GGMLType.q4_1, .q8_0])
    func dispatchedMatchesReference(type: GGMLType) {
        var rng = SplitMix64(seed: 11)
        for shape in shapes {
            let m = RandomQuantizedMatrix(type: type, rows: shape.rows, cols: shape.cols, rng: &rng)
            let x = randomFloats(shape.cols, &rng)
            let reference = m.reference(x)
            var sums = [Float](repeating: 0, count: shape.cols / 32)
            var outputs: [[Float]] = []
            for workers in [nil, DecodeWorkers(threads: 2), DecodeWorkers(threads: 3)] {
                var y = [Float](repeating: .nan, count: shape.rows)
                m.packed.multiply(x, into: &y, accumulate: false, blockSums: &sums, workers: workers)
                expectWithinRounding(y, reference, "\(type) \(shape) threads \(workers?.threads ?? 1)")
                outputs.append(y)
            }
            #expect(outputs.allSatisfy { $0 == outputs[0] }, "results depend on the thread count")
        }
    }

    @Test("accumulating adds the product to what the output held", arguments: [GGMLType.q4_1, .q8_0])
    func accumulates(type: GGMLType) {
        var rng = SplitMix64(seed: 12)
        let m = RandomQuantizedMatrix(type: type, rows: 45, cols: 192, rng: &rng)
        let x = randomFloats(192, &rng)
        let before = randomFloats(45, &rng)
        var y = before
        var sums = [Float](repeating: 0, count: 6)
        m.packed.multiply(x, into: &y, accumulate: true, blockSums: &sums, workers: DecodeWorkers(threads: 2))
        expectWithinRounding(y, m.reference(x), offsets: before, "\(type) accumulate")
    }

    @Test("the portable C fallback equals dequantise-then-dot", arguments: [GGMLType.q4_1, .q8_0])
    func portableMatchesReference(type: GGMLType) {
        var rng = SplitMix64(seed: 13)
        for shape in shapes {
            let m = RandomQuantizedMatrix(type: type, rows: shape.rows, cols: shape.cols, rng: &rng)
            let x = randomFloats(shape.cols, &rng)
            var sums = [Float](repeating: 0, count: shape.cols / 32)
            kv_block_sums(x, sums.count, &sums)
            var y = [Float](repeating: .nan, count: shape.rows)
            let p = m.packed
            if type == .q4_1 {
                kv_q4_1_matvec_portable(p.quants, p.scales, p.minimums, p.blocksPerRow, x, sums, &y, 0, shape.rows, false)
            } else {
                UnsafeRawPointer(p.quants).withMemoryRebound(to: Int8.self, capacity: 1) { q in
                    kv_q8_0_matvec_portable(q, p.scales, p.blocksPerRow, x, &y, 0, shape.rows, false)
                }
            }
            expectWithinRounding(y, m.reference(x), "\(type) \(shape) portable")
        }
    }

    @Test("a row's result does not depend on where its row range starts", arguments: [GGMLType.q4_1, .q8_0])
    func rowRangeIndependent(type: GGMLType) {
        var rng = SplitMix64(seed: 14)
        let m = RandomQuantizedMatrix(type: type, rows: 23, cols: 320, rng: &rng)
        let x = randomFloats(320, &rng)
        var sums = [Float](repeating: 0, count: 10)
        kv_block_sums(x, 10, &sums)
        var whole = [Float](repeating: .nan, count: 23), single = whole
        m.packed.multiply(x, blockSums: sums, into: &whole, rows: 0 ..< 23, accumulate: false)
        for r in 0 ..< 23 { m.packed.multiply(x, blockSums: sums, into: &single, rows: r ..< r + 1, accumulate: false) }
        let offset = 3   // tiles starting at row 3 put rows 0-2 in no tile and the tail elsewhere
        var shifted = [Float](repeating: .nan, count: 23)
        m.packed.multiply(x, blockSums: sums, into: &shifted, rows: 0 ..< offset, accumulate: false)
        m.packed.multiply(x, blockSums: sums, into: &shifted, rows: offset ..< 23, accumulate: false)
        #expect(whole == single)
        #expect(whole == shifted)
    }

    @Test("block sums are the sums of each 32 inputs")
    func blockSums() {
        var rng = SplitMix64(seed: 15)
        let x = randomFloats(96, &rng)
        var sums = [Float](repeating: .nan, count: 3)
        kv_block_sums(x, 3, &sums)
        for b in 0 ..< 3 {
            let exact = x[32 * b ..< 32 * b + 32].reduce(0.0) { $0 + Double($1) }
            #expect(abs(Double(sums[b]) - exact) <= 1e-5)
        }
    }

    @Test("AVX2+FMA kernels are chosen exactly when the CPU lists avx2 and fma")
    func isaFollowsCPU() throws {
        #if os(Linux) && arch(x86_64)
        let info = try String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)
        let flags = Set(info.split(separator: "\n").first { $0.hasPrefix("flags") }?.split(separator: " ").map(String.init) ?? [])
        let expected: KVKernelsISA = flags.contains("avx2") && flags.contains("fma") ? KVKernelsISAAVX2FMA : KVKernelsISAPortable
        #expect(kv_kernels_isa() == expected)
        #elseif !arch(x86_64)
        #expect(kv_kernels_isa() == KVKernelsISAPortable)
        #endif
    }
}
