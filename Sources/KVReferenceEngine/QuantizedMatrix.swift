import CKernels

/// A Q4_1 or Q8_0 weight matrix repacked for the single-token (decode) matrix-vector product, which
/// is bound by memory traffic: 4.5 or 8.5 bits per weight instead of 32 for the fp32 copy.
///
/// Layout, row-major over `rows x blocksPerRow` blocks of 32 weights: `quants` holds 16 bytes per
/// block (Q4_1: weight j in the low nibble of byte j, weight j+16 in the high nibble) or 32 signed
/// bytes (Q8_0); `scales[b]` and (Q4_1) `minimums[b]` are the block's f16 `d` and `m` widened to fp32.
/// A weight is `d * q + m` (Q4_1) or `d * q` (Q8_0) exactly as in `Dequantize`, so the product is
/// the same real-valued function as with the fp32 matrix; only fp32 rounding order differs.
public final class QuantizedMatrix: @unchecked Sendable {
    // Sendable: every field is a `let`, and the buffers behind the pointers are written in `init` only.
    public enum Kind: Sendable { case q4_1, q8_0 }
    public let kind: Kind
    public let rows: Int
    public let cols: Int
    public let blocksPerRow: Int
    let quants: UnsafeMutablePointer<UInt8>
    let scales: UnsafeMutablePointer<Float>
    let minimums: UnsafeMutablePointer<Float>

    /// Repacks the GGUF bytes of a `[cols, rows]` Q4_1 or Q8_0 tensor; nil for other types. O(size).
    init?(type: GGMLType, bytes: UnsafeRawPointer, rows: Int, cols: Int) {
        switch type {
        case .q4_1: kind = .q4_1
        case .q8_0: kind = .q8_0
        default: return nil
        }
        precondition(cols % 32 == 0)
        self.rows = rows
        self.cols = cols
        blocksPerRow = cols / 32
        let blocks = rows * blocksPerRow
        let quantBytes = kind == .q4_1 ? 16 : 32
        quants = UnsafeMutableRawPointer.allocate(byteCount: blocks * quantBytes, alignment: 64)
            .bindMemory(to: UInt8.self, capacity: blocks * quantBytes)
        scales = .allocate(capacity: blocks)
        minimums = .allocate(capacity: kind == .q4_1 ? blocks : 1)
        minimums.initialize(to: 0)
        let blockBytes = kind == .q4_1 ? 20 : 34
        for b in 0 ..< blocks {
            let src = bytes + b * blockBytes
            scales[b] = Dequantize.half(src, 0)
            if kind == .q4_1 { minimums[b] = Dequantize.half(src, 2) }
            UnsafeMutableRawPointer(quants + b * quantBytes).copyMemory(from: src + (kind == .q4_1 ? 4 : 2), byteCount: quantBytes)
        }
    }

    deinit {
        quants.deallocate()
        scales.deallocate()
        minimums.deallocate()
    }

    /// Bytes held.
    public var byteCount: Int { rows * blocksPerRow * ((kind == .q4_1 ? 16 : 32) + 8) }

    /// `y = W x` (or `y += W x` when `accumulate`) for rows `range`. `blockSums[b]` must be the sum of
    /// `x[32b ..< 32b + 32]` (used by Q4_1's minimums). O(range x cols), no allocation. The C kernel
    /// (`kv_q4_1_matvec` / `kv_q8_0_matvec`) runs AVX2+FMA where the CPU has it, portable C elsewhere.
    func multiply(_ x: UnsafePointer<Float>, blockSums: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>,
                  rows range: Range<Int>, accumulate: Bool) {
        switch kind {
        case .q4_1:
            kv_q4_1_matvec(quants, scales, minimums, blocksPerRow, x, blockSums, y, range.lowerBound, range.upperBound,
                           accumulate)
        case .q8_0:
            // Int8 and UInt8 may alias (signed/unsigned variants of one type).
            kv_q8_0_matvec(UnsafeRawPointer(quants).assumingMemoryBound(to: Int8.self), scales, blocksPerRow, x, y,
                           range.lowerBound, range.upperBound, accumulate)
        }
    }

    /// `y (+)= W x`, split into four row ranges per thread of `workers` when there are at least 64 rows
    /// per thread (else on the calling thread alone). Each row is computed the same way whatever the
    /// split, so results do not depend on the thread count. O(rows x cols), no allocation.
    /// - Parameter blockSums: scratch of at least `blocksPerRow` floats.
    func multiply(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, accumulate: Bool,
                  blockSums: UnsafeMutablePointer<Float>, workers: DecodeWorkers?) {
        kv_block_sums(x, blocksPerRow, blockSums)
        guard let workers, rows >= 64 * workers.threads else {
            multiply(x, blockSums: blockSums, into: y, rows: 0 ..< rows, accumulate: accumulate)
            return
        }
        nonisolated(unsafe) let (xs, sums, out) = (x, UnsafePointer(blockSums), y)
        let rows = rows
        workers.run(parts: 4 * workers.threads) { part, parts in
            let rowsPerPart = ((rows + parts - 1) / parts + 3) & ~3   // whole four-row tiles
            let lower = min(rows, part * rowsPerPart), upper = min(rows, lower + rowsPerPart)
            self.multiply(xs, blockSums: sums, into: out, rows: lower ..< upper, accumulate: accumulate)
        }
    }
}
