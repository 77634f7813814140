import KVData
import KVScheduler

/// The serving copy of a `TextLengthModel`'s weights: bfloat16 (the top 16 bits of each Float32),
/// each row padded to 32 lanes = 64 bytes and aligned to 64, so scoring one feature reads exactly
/// one cache line.
///
/// Prediction cost is dominated by fetching one weight row per feature from a table far larger than
/// the caches; halving the row and aligning it halves the lines fetched. bfloat16 keeps 8 bits of
/// mantissa: a relative error below 0.4% per weight, far below what moves a bucket probability.
/// Owns its memory (freed in `deinit`); single-threaded like its predictor.
final class PackedWeights {
    /// Lanes per row (a multiple of 32, at least the bucket count).
    let lanes: Int
    let rows: Int
    let buckets: Int
    private let storage: UnsafeMutablePointer<UInt16>
    /// Receives the touch pass's loads so that they are not optimised away.
    private var touched: UInt16 = 0

    init(model: TextLengthModel) {
        buckets = model.buckets.count
        lanes = (buckets + 31) & ~31
        // One row per hash slot, whatever the weights hold, so every index the hasher can produce is in bounds.
        rows = 1 << model.hashing.hashBits
        let stored = min(rows, model.weights.count / model.rowStride)
        let bytes = rows * lanes * 2
        storage = UnsafeMutableRawPointer.allocate(byteCount: max(64, bytes), alignment: 64)
            .bindMemory(to: UInt16.self, capacity: max(32, rows * lanes))
        storage.initialize(repeating: 0, count: max(32, rows * lanes))
        model.weights.withUnsafeBufferPointer { w in
            for r in 0..<stored {
                for c in 0..<buckets { storage[r * lanes + c] = Self.bfloat16(w[r * model.rowStride + c]) }
            }
        }
    }

    deinit { storage.deallocate() }

    /// Overwrites one row from Float32 weights (after an online update). O(K).
    func store(row: Int, from weights: UnsafePointer<Float>) {
        for c in 0..<buckets { storage[row * lanes + c] = Self.bfloat16(weights[c]) }
    }

    /// Float32 -> bfloat16 with round-to-nearest-even. O(1).
    @inline(__always) static func bfloat16(_ x: Float) -> UInt16 {
        let bits = x.bitPattern
        let rounding = UInt32(0x7fff) + ((bits >> 16) & 1)
        return UInt16(truncatingIfNeeded: (bits &+ rounding) >> 16)
    }

    /// Writes `sum over features of value x row(slot)` into `scores[0 ..< lanes]`.
    ///
    /// - Complexity: O(F) rows of one cache line each, 8 lanes per SIMD step; allocates nothing.
    ///   `indices` must lie in `0 ..< rows` (the hasher guarantees it).
    @inline(__always)
    func accumulate(scores: UnsafeMutablePointer<Float>, indices: UnsafePointer<Int32>,
                    values: UnsafePointer<Float>, count: Int) {
        let used = (buckets + 7) / 8          // 8-lane chunks holding real buckets
        let out = UnsafeMutableRawPointer(scores)
        // Touch pass: a tight loop of independent loads keeps many cache misses in flight at once,
        // so the scoring loop below finds its rows in cache (measured: about 2x faster on cold rows).
        var touch: UInt16 = 0
        for i in 0..<count { touch |= storage[Int(indices[i]) * lanes] }
        touched = touch
        var first = 0
        while first < used {
            let n = min(4, used - first)
            var a0 = SIMD8<Float>(repeating: 0), a1 = a0, a2 = a0, a3 = a0
            for i in 0..<count {
                let row = UnsafeRawPointer(storage + Int(indices[i]) * lanes + first * 8)
                let v = values[i]
                a0 += v * Self.widen(row.load(as: SIMD8<UInt16>.self))
                if n > 1 { a1 += v * Self.widen(row.load(fromByteOffset: 16, as: SIMD8<UInt16>.self)) }
                if n > 2 { a2 += v * Self.widen(row.load(fromByteOffset: 32, as: SIMD8<UInt16>.self)) }
                if n > 3 { a3 += v * Self.widen(row.load(fromByteOffset: 48, as: SIMD8<UInt16>.self)) }
            }
            let base = first * 32
            out.storeBytes(of: a0, toByteOffset: base, as: SIMD8<Float>.self)
            if n > 1 { out.storeBytes(of: a1, toByteOffset: base + 32, as: SIMD8<Float>.self) }
            if n > 2 { out.storeBytes(of: a2, toByteOffset: base + 64, as: SIMD8<Float>.self) }
            if n > 3 { out.storeBytes(of: a3, toByteOffset: base + 96, as: SIMD8<Float>.self) }
            first += n
        }
    }

    /// bfloat16 x 8 -> Float32 x 8: the 16 bits become the high half. O(1).
    @inline(__always) static func widen(_ h: SIMD8<UInt16>) -> SIMD8<Float> {
        unsafeBitCast(SIMD8<UInt32>(truncatingIfNeeded: h) &<< 16, to: SIMD8<Float>.self)
    }
}
