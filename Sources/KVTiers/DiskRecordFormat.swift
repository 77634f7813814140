import CXXHash
import KVCache

/// The on-disk record of the L3 tier: a 48-byte header then the payload, all little-endian.
///
/// ```
///  0  magic          UInt32  "KVB1"
///  4  mode           UInt8   KVCodecMode of the payload
///  5  version        UInt8   1
///  6  reserved       UInt16  0
///  8  key.lo         UInt64  the block's key
/// 16  key.hi         UInt64
/// 24  storedLength   UInt32  payload bytes that follow the header
/// 28  rawLength      UInt32  bytes after decoding
/// 32  payloadXXH3    UInt64  XXH3-64 of the payload
/// 40  headerXXH3     UInt64  XXH3-64 of bytes 0..<40
/// ```
/// The header checksum lets a scan tell a valid record boundary from garbage and resynchronize after a
/// damaged header; the payload checksum catches any flipped payload byte. Records never straddle segments.
enum DiskRecordFormat {
    static let headerSize = 48
    static let magic: UInt32 = 0x3142_564B // "KVB1" read as little-endian
    static let version: UInt8 = 1

    struct Header: Equatable {
        var mode: KVCodecMode
        var key: BlockKey
        var storedLength: Int
        var rawLength: Int
        var payloadChecksum: UInt64
        var recordLength: Int { DiskRecordFormat.headerSize + storedLength }
    }

    static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        XXH3_64bits(bytes.baseAddress, bytes.count)
    }

    /// Writes a header for `payload` into `out[0..<48]`.
    static func writeHeader(into out: UnsafeMutableRawBufferPointer, mode: KVCodecMode, key: BlockKey,
                            rawLength: Int, payload: UnsafeRawBufferPointer) {
        precondition(out.count >= headerSize)
        out.storeBytes(of: magic.littleEndian, toByteOffset: 0, as: UInt32.self)
        out.storeBytes(of: mode.rawValue, toByteOffset: 4, as: UInt8.self)
        out.storeBytes(of: version, toByteOffset: 5, as: UInt8.self)
        out.storeBytes(of: UInt16(0), toByteOffset: 6, as: UInt16.self)
        out.storeBytes(of: key.lo.littleEndian, toByteOffset: 8, as: UInt64.self)
        out.storeBytes(of: key.hi.littleEndian, toByteOffset: 16, as: UInt64.self)
        out.storeBytes(of: UInt32(payload.count).littleEndian, toByteOffset: 24, as: UInt32.self)
        out.storeBytes(of: UInt32(rawLength).littleEndian, toByteOffset: 28, as: UInt32.self)
        out.storeBytes(of: checksum(payload).littleEndian, toByteOffset: 32, as: UInt64.self)
        let h = checksum(UnsafeRawBufferPointer(rebasing: out[0 ..< 40]))
        out.storeBytes(of: h.littleEndian, toByteOffset: 40, as: UInt64.self)
    }

    /// Parses and checks a header (magic, version, mode, header checksum, lengths within `maxRaw`).
    /// Returns nil for anything that is not a valid header.
    static func parseHeader(_ b: UnsafeRawBufferPointer, maxRaw: Int) -> Header? {
        guard b.count >= headerSize,
              UInt32(littleEndian: b.loadUnaligned(fromByteOffset: 0, as: UInt32.self)) == magic,
              b.load(fromByteOffset: 5, as: UInt8.self) == version,
              let mode = KVCodecMode(rawValue: b.load(fromByteOffset: 4, as: UInt8.self)) else { return nil }
        let h = UInt64(littleEndian: b.loadUnaligned(fromByteOffset: 40, as: UInt64.self))
        guard h == checksum(UnsafeRawBufferPointer(rebasing: b[0 ..< 40])) else { return nil }
        let stored = Int(UInt32(littleEndian: b.loadUnaligned(fromByteOffset: 24, as: UInt32.self)))
        let raw = Int(UInt32(littleEndian: b.loadUnaligned(fromByteOffset: 28, as: UInt32.self)))
        guard raw <= maxRaw, stored <= KVByteCodec.maxEncodedSize(rawBytes: maxRaw) else { return nil }
        let key = BlockKey(lo: UInt64(littleEndian: b.loadUnaligned(fromByteOffset: 8, as: UInt64.self)),
                           hi: UInt64(littleEndian: b.loadUnaligned(fromByteOffset: 16, as: UInt64.self)))
        return Header(mode: mode, key: key, storedLength: stored, rawLength: raw,
                      payloadChecksum: UInt64(littleEndian: b.loadUnaligned(fromByteOffset: 32, as: UInt64.self)))
    }

    /// One valid record found by `scan`.
    struct Found { var header: Header; var offset: Int }

    /// The result of scanning one segment's bytes.
    struct ScanResult {
        var records: [Found] = []
        /// Damaged records: payload checksum failures, garbage regions skipped to resynchronize, a torn tail.
        var corrupt = 0
        /// Byte ranges that are not valid records.
        var badRanges: [Range<Int>] = []
        var tornTail = false
    }

    /// Scans a whole segment: every record whose header and payload checksums hold is returned; every
    /// damaged region is counted and skipped (after a bad header, the scan resynchronizes at the next
    /// offset that holds a valid header). O(bytes).
    static func scan(_ b: UnsafeRawBufferPointer, maxRaw: Int) -> ScanResult {
        var r = ScanResult()
        var off = 0
        var garbageStart: Int? = nil
        func closeGarbage(at end: Int) {
            if let g = garbageStart { r.corrupt += 1; r.badRanges.append(g ..< end); garbageStart = nil }
        }
        while off < b.count {
            let rest = UnsafeRawBufferPointer(rebasing: b[off...])
            guard let h = parseHeader(rest, maxRaw: maxRaw) else {
                if rest.count < headerSize && garbageStart == nil { garbageStart = off; r.tornTail = true; break }
                if garbageStart == nil { garbageStart = off }
                off += 1
                continue
            }
            closeGarbage(at: off)
            guard h.recordLength <= rest.count else {
                // A header whose payload runs past the end: a write cut short.
                garbageStart = off; r.tornTail = true; break
            }
            let payload = UnsafeRawBufferPointer(rebasing: rest[headerSize ..< h.recordLength])
            if checksum(payload) == h.payloadChecksum {
                r.records.append(Found(header: h, offset: off))
            } else {
                r.corrupt += 1; r.badRanges.append(off ..< off + h.recordLength)
            }
            off += h.recordLength
        }
        if garbageStart != nil {
            if !r.tornTail && b.count - garbageStart! < headerSize { r.tornTail = true }
            closeGarbage(at: b.count)
        }
        return r
    }
}
