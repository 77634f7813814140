import Dispatch

/// A Q4_1 or Q8_0 weight matrix repacked for the single-token (decode) matrix-vector product, which
/// is bound by memory traffic: 4.5 or 8.5 bits per weight instead of 32 for the fp32 copy.
///
/// Layout, row-major over `rows x blocksPerRow` blocks of 32 weights: `quants` holds 16 bytes per
/// block (Q4_1: weight j in the low nibble of byte j, weight j+16 in the high nibble) or 32 signed
/// bytes (Q8_0); `scales[b]` and (Q4_1) `minimums[b]` are the block's f16 `d` and `m` widened to fp32.
/// A weight is `d * q + m` (Q4_1) or `d * q` (Q8_0) exactly as in `Dequantize`, so the product is
/// the same real-valued function as with the fp32 matrix; only fp32 rounding order differs.
public final class QuantizedMatrix: @unchecked Sendable {
    public enum Kind: Sendable { case q4_1, q8_0 }
    public let kind: Kind
    public let rows: Int
    public let cols: Int
    public let blocksPerRow: Int
    let quants: UnsafeMutableRawPointer
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
        quants = .allocate(byteCount: blocks * quantBytes, alignment: 64)
        scales = .allocate(capacity: blocks)
        minimums = .allocate(capacity: kind == .q4_1 ? blocks : 1)
        minimums.initialize(to: 0)
        let blockBytes = kind == .q4_1 ? 20 : 34
        for b in 0 ..< blocks {
            let src = bytes + b * blockBytes
            scales[b] = Dequantize.half(src, 0)
            if kind == .q4_1 { minimums[b] = Dequantize.half(src, 2) }
            (quants + b * quantBytes).copyMemory(from: src + (kind == .q4_1 ? 4 : 2), byteCount: quantBytes)
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
    /// `x[32b ..< 32b + 32]` (used by Q4_1's minimums). O(range x cols), no allocation.
    func multiply(_ x: UnsafePointer<Float>, blockSums: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>,
                  rows range: Range<Int>, accumulate: Bool) {
        let xr = UnsafeRawPointer(x)
        let nb = blocksPerRow
        switch kind {
        case .q4_1:
            for r in range {
                var acc = SIMD16<Float>()
                var mins: Float = 0
                let q = UnsafeRawPointer(quants) + r * nb * 16
                let d = scales + r * nb, m = minimums + r * nb
                for b in 0 ..< nb {
                    let bytes = q.loadUnaligned(fromByteOffset: b * 16, as: SIMD16<UInt8>.self)
                    let lo = SIMD16<Float>(SIMD16<Int32>(truncatingIfNeeded: bytes & 0x0F))
                    let hi = SIMD16<Float>(SIMD16<Int32>(truncatingIfNeeded: bytes &>> 4))
                    let xl = xr.loadUnaligned(fromByteOffset: b * 128, as: SIMD16<Float>.self)
                    let xh = xr.loadUnaligned(fromByteOffset: b * 128 + 64, as: SIMD16<Float>.self)
                    acc += d[b] * (lo * xl + hi * xh)
                    mins += m[b] * blockSums[b]
                }
                let v = acc.sum() + mins
                y[r] = accumulate ? y[r] + v : v
            }
        case .q8_0:
            for r in range {
                var acc = SIMD16<Float>()
                let q = UnsafeRawPointer(quants) + r * nb * 32
                let d = scales + r * nb
                for b in 0 ..< nb {
                    let lo = SIMD16<Float>(SIMD16<Int32>(truncatingIfNeeded: q.loadUnaligned(fromByteOffset: b * 32, as: SIMD16<Int8>.self)))
                    let hi = SIMD16<Float>(SIMD16<Int32>(truncatingIfNeeded: q.loadUnaligned(fromByteOffset: b * 32 + 16, as: SIMD16<Int8>.self)))
                    let xl = xr.loadUnaligned(fromByteOffset: b * 128, as: SIMD16<Float>.self)
                    let xh = xr.loadUnaligned(fromByteOffset: b * 128 + 64, as: SIMD16<Float>.self)
                    acc += d[b] * (lo * xl + hi * xh)
                }
                let v = acc.sum()
                y[r] = accumulate ? y[r] + v : v
            }
        }
    }

    /// `y (+)= W x` split into `threads` row ranges run in parallel. Each row is computed the same way
    /// whatever the split, so results do not depend on the thread count.
    /// - Parameter blockSums: scratch of at least `blocksPerRow` floats.
    func multiply(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, accumulate: Bool,
                  blockSums: UnsafeMutablePointer<Float>, threads: Int) {
        for b in 0 ..< blocksPerRow {
            var s: Float = 0
            for j in 0 ..< 32 { s += x[32 * b + j] }
            blockSums[b] = s
        }
        let parts = max(1, min(threads, rows / 64))
        if parts == 1 {
            multiply(x, blockSums: blockSums, into: y, rows: 0 ..< rows, accumulate: accumulate)
            return
        }
        nonisolated(unsafe) let (xs, sums, out) = (x, UnsafePointer(blockSums), y)
        let rowsPerPart = (rows + parts - 1) / parts
        DispatchQueue.concurrentPerform(iterations: parts) { p in
            let lower = p * rowsPerPart, upper = min(rows, lower + rowsPerPart)
            multiply(xs, blockSums: sums, into: out, rows: lower ..< upper, accumulate: accumulate)
        }
    }
}
