import KVPlan
/// How a block's bytes are stored on disk.
public enum KVCodecMode: UInt8, Sendable {
    /// The raw bytes (compression did not pay).
    case raw = 0
    /// zstd over the bytes as they are (8-bit elements, or plain mode).
    case zstd = 1
    /// zstd over byte planes: every 16-bit element split into a low-byte plane and a high-byte plane,
    /// each plane compressed as its own frame (or kept raw when it does not compress).
    case zstdBytePlanes = 2
}

/// A KV-aware compressor for blocks: splits each 16-bit element (fp16, bf16) into a high-byte plane (sign,
/// exponent: very repetitive across a KV block) and a low-byte plane (mantissa: nearly random), then
/// compresses both with zstd level 1 through reused contexts. When compression does not save at least
/// `minSavings` of the input, the block is kept raw, so a load never pays for decompression that buys nothing.
///
/// Not thread-safe: one codec per worker thread. Owns its scratch buffers; `encode`/`decode` allocate
/// nothing. Cost: O(n) for the plane split plus zstd.
public final class KVByteCodec {
    public let elementSize: Int
    public let usesBytePlanes: Bool
    public let maxInputBytes: Int
    /// Fraction of the input compression must save to be kept (default 1/32).
    public let minSavings: Double
    private let compressor: ZstdCompressor
    private let decompressor: ZstdDecompressor
    /// Scratch for the byte planes, bound to UInt8 for the codec's lifetime.
    private let planes: UnsafeMutableRawBufferPointer
    private let planeBytes: UnsafeMutableBufferPointer<UInt8>

    /// - Parameters:
    ///   - elementSize: 2 for fp16/bf16 (byte planes), 1 for fp8 (plain zstd).
    ///   - bytePlanes: false forces plain zstd (to compare against).
    ///   - maxInputBytes: the largest block this codec will see.
    public init(elementSize: Int, bytePlanes: Bool = true, maxInputBytes: Int, level: Int32 = 1,
                minSavings: Double = 1.0 / 32) throws(TierError) {
        guard elementSize == 1 || elementSize == 2 else { throw .invalidArgument("element size must be 1 or 2") }
        guard maxInputBytes > 0, maxInputBytes % elementSize == 0 else { throw .invalidArgument("bad maximum input size") }
        self.elementSize = elementSize
        self.usesBytePlanes = bytePlanes && elementSize == 2
        self.maxInputBytes = maxInputBytes
        self.minSavings = minSavings
        compressor = try ZstdCompressor(level: level)
        decompressor = try ZstdDecompressor()
        planes = .allocate(byteCount: maxInputBytes, alignment: 64)
        planeBytes = planes.bindMemory(to: UInt8.self)
    }

    public convenience init(layout: KVGeometry, bytePlanes: Bool = true) throws(TierError) {
        // fp32 is coded as two 16-bit words per element (byte planes of their low and high bytes).
        try self.init(elementSize: min(layout.dtype.size, 2), bytePlanes: bytePlanes, maxInputBytes: layout.bytesPerBlock)
    }

    deinit { planes.deallocate() }

    /// The buffer size `encode` needs for `rawBytes` of input.
    public static func maxEncodedSize(rawBytes: Int) -> Int { 8 + 2 * Zstd.bound(rawBytes / 2 + 1) }

    /// Encodes `src` into `dst`. Returns the mode and the encoded size; for `.raw` nothing is written to
    /// `dst` and the caller stores `src` itself.
    /// - Throws: `.invalidArgument` when `src` is larger than `maxInputBytes` or not a whole number of
    ///   elements, `.zstd` when zstd fails (e.g. `dst` too small).
    public func encode(_ src: UnsafeRawBufferPointer, into dst: UnsafeMutableRawBufferPointer) throws(TierError) -> (mode: KVCodecMode, count: Int) {
        guard src.count <= maxInputBytes, src.count % elementSize == 0 else { throw .invalidArgument("input size") }
        if src.isEmpty { return (.raw, 0) }
        if !usesBytePlanes {
            let n = try compressor.compress(src, into: dst)
            if Double(n) > Double(src.count) * (1 - minSavings) { return (.raw, src.count) }
            return (.zstd, n)
        }
        // Byte planes: each plane is its own zstd frame, so each gets its own entropy tables (zstd's
        // literal Huffman table is per block: one frame over both planes would mix their statistics).
        // A plane that does not compress (fp16 mantissas) is stored raw, so decoding only copies it.
        // Layout: [UInt32 LE low size | raw flag bit 31][UInt32 LE high size | flag][low plane][high plane].
        Self.split(src, into: planeBytes)
        let half = src.count / 2
        guard dst.count >= Self.maxEncodedSize(rawBytes: src.count) else { throw .invalidArgument("output buffer too small") }
        var offset = 8
        for (p, plane) in [planes[0 ..< half], planes[half ..< src.count]].enumerated() {
            let input = UnsafeRawBufferPointer(rebasing: plane)
            let out = UnsafeMutableRawBufferPointer(rebasing: dst[offset...])
            var n = try compressor.compress(input, into: out)
            var header = UInt32(n)
            if Double(n) > Double(half) * (1 - minSavings) {
                out.baseAddress!.copyMemory(from: input.baseAddress!, byteCount: half)
                n = half
                header = UInt32(half) | Self.rawPlaneFlag
            }
            dst.storeBytes(of: header.littleEndian, toByteOffset: 4 * p, as: UInt32.self)
            offset += n
        }
        if Double(offset) > Double(src.count) * (1 - minSavings) { return (.raw, src.count) }
        return (.zstdBytePlanes, offset)
    }

    static let rawPlaneFlag: UInt32 = 1 << 31

    /// Decodes `src` (stored in `mode`) into exactly `dst.count` bytes.
    /// - Throws: `.corrupt` when the decoded size differs, `.zstd` when the frame is damaged.
    public func decode(_ src: UnsafeRawBufferPointer, mode: KVCodecMode, into dst: UnsafeMutableRawBufferPointer) throws(TierError) {
        switch mode {
        case .raw:
            guard src.count == dst.count else { throw .corrupt("raw size \(src.count) != \(dst.count)") }
            if !dst.isEmpty { dst.baseAddress!.copyMemory(from: src.baseAddress!, byteCount: src.count) }
        case .zstd:
            let n = try decompressor.decompress(src, into: dst)
            guard n == dst.count else { throw .corrupt("decoded \(n) bytes, expected \(dst.count)") }
        case .zstdBytePlanes:
            guard dst.count <= maxInputBytes, dst.count % 2 == 0 else { throw .corrupt("byte-plane size \(dst.count)") }
            guard src.count >= 8 else { throw .corrupt("byte-plane payload too short") }
            let half = dst.count / 2
            var offset = 8
            var low = UnsafeRawBufferPointer(start: nil, count: 0), high = low
            for p in 0 ..< 2 {
                let header = UInt32(littleEndian: src.loadUnaligned(fromByteOffset: 4 * p, as: UInt32.self))
                let n = Int(header & ~Self.rawPlaneFlag)
                guard n <= src.count - offset else { throw .corrupt("byte-plane size \(n)") }
                let stored = UnsafeRawBufferPointer(rebasing: src[offset ..< offset + n])
                if header & Self.rawPlaneFlag != 0 {
                    guard n == half else { throw .corrupt("raw plane of \(n) bytes, expected \(half)") }
                    if p == 0 { low = stored } else { high = stored }
                } else {
                    let scratch = UnsafeMutableRawBufferPointer(rebasing: planes[p * half ..< (p + 1) * half])
                    let got = try decompressor.decompress(stored, into: scratch)
                    guard got == half else { throw .corrupt("plane decoded to \(got) bytes, expected \(half)") }
                    if p == 0 { low = UnsafeRawBufferPointer(scratch) } else { high = UnsafeRawBufferPointer(scratch) }
                }
                offset += n
            }
            guard offset == src.count else { throw .corrupt("byte-plane payload has \(src.count - offset) extra bytes") }
            Self.merge(low: low, high: high, into: dst)
        }
    }

    /// Splits 16-bit elements: low bytes to `out[0..<n]`, high bytes to `out[n..<2n]`. O(n), vectorized.
    /// `src` is rebound to UInt16 for the loop only (whatever type its bytes were bound to).
    @inline(__always)
    static func split(_ src: UnsafeRawBufferPointer, into out: UnsafeMutableBufferPointer<UInt8>) {
        src.withMemoryRebound(to: UInt16.self) { s in
            let n = s.count
            precondition(out.count >= 2 * n)
            let lo = out.baseAddress!, hi = lo + n
            // In bounds: i < n, and out holds 2n bytes (checked above).
            for i in 0 ..< n {
                let v = UInt16(littleEndian: s[i])
                lo[i] = UInt8(truncatingIfNeeded: v)
                hi[i] = UInt8(truncatingIfNeeded: v &>> 8)
            }
        }
    }

    /// The inverse of `split`: low bytes from `low`, high bytes from `high`. O(n), vectorized.
    @inline(__always)
    static func merge(low: UnsafeRawBufferPointer, high: UnsafeRawBufferPointer, into dst: UnsafeMutableRawBufferPointer) {
        dst.withMemoryRebound(to: UInt16.self) { d in
            low.withMemoryRebound(to: UInt8.self) { lo in
                high.withMemoryRebound(to: UInt8.self) { hi in
                    let n = d.count
                    precondition(lo.count >= n && hi.count >= n)
                    let l = lo.baseAddress!, h = hi.baseAddress!
                    for i in 0 ..< n { d[i] = UInt16(littleEndian: UInt16(l[i]) | UInt16(h[i]) &<< 8) }
                }
            }
        }
    }
}
