import CXXHash
import KVCache

/// The on-disk record of the L3 tier: a header then the payload, all little-endian. Version 2 (written
/// now) is a 64-byte header that also names the block's parent key, so a store reopened after a restart
/// still reports where each block sits in the prefix tree:
///
/// ```
///  0  magic          UInt32  "KVB1"
///  4  mode           UInt8   KVCodecMode of the payload
///  5  version        UInt8   2
///  6  flags          UInt16  bit 0: the parent key is set (otherwise a first block, or not known)
///  8  key.lo         UInt64  the block's key
/// 16  key.hi         UInt64
/// 24  parent.lo      UInt64  the parent block's key (0 when flags bit 0 is clear)
/// 32  parent.hi      UInt64
/// 40  storedLength   UInt32  payload bytes that follow the header
/// 44  rawLength      UInt32  bytes after decoding
/// 48  payloadXXH3    UInt64  XXH3-64 of the payload
/// 56  headerXXH3     UInt64  XXH3-64 of bytes 0..<56
/// ```
/// Version 1 records (48-byte header: no parent, reserved UInt16 at 6, then key, storedLength at 24,
/// rawLength at 28, payloadXXH3 at 32, headerXXH3 of bytes 0..<40 at 40) are still read, with no parent.
/// The header checksum lets a scan tell a valid record boundary from garbage and resynchronize after a
/// damaged header; the payload checksum catches any flipped payload byte. Records never straddle segments.
enum DiskRecordFormat {
    /// The header written now (version 2); also the largest header a record may have.
    static let headerSize = 64
    static let headerSizeV1 = 48
    static let magic: UInt32 = 0x3142_564B // "KVB1" read as little-endian
    static let version: UInt8 = 2
    static let flagHasParent: UInt16 = 1

    struct Header: Equatable {
        var mode: KVCodecMode
        var key: BlockKey
        /// The parent block's key; nil for a first block or a version 1 record.
        var parent: BlockKey?
        var storedLength: Int
        var rawLength: Int
        var payloadChecksum: UInt64
        /// 48 (version 1) or 64 (version 2).
        var size: Int = DiskRecordFormat.headerSize
        var recordLength: Int { size + storedLength }
    }

    static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        XXH3_64bits(bytes.baseAddress, bytes.count)
    }

    /// Writes a version 2 header for `payload` into `out[0..<64]`.
    static func writeHeader(into out: UnsafeMutableRawBufferPointer, mode: KVCodecMode, key: BlockKey, parent: BlockKey? = nil,
                            rawLength: Int, payload: UnsafeRawBufferPointer) {
        precondition(out.count >= headerSize)
        let p = parent ?? .zero
        out.storeBytes(of: magic.littleEndian, toByteOffset: 0, as: UInt32.self)
        out.storeBytes(of: mode.rawValue, toByteOffset: 4, as: UInt8.self)
        out.storeBytes(of: version, toByteOffset: 5, as: UInt8.self)
        out.storeBytes(of: (parent == nil ? 0 : flagHasParent).littleEndian, toByteOffset: 6, as: UInt16.self)
        out.storeBytes(of: key.lo.littleEndian, toByteOffset: 8, as: UInt64.self)
        out.storeBytes(of: key.hi.littleEndian, toByteOffset: 16, as: UInt64.self)
        out.storeBytes(of: p.lo.littleEndian, toByteOffset: 24, as: UInt64.self)
        out.storeBytes(of: p.hi.littleEndian, toByteOffset: 32, as: UInt64.self)
        out.storeBytes(of: UInt32(payload.count).littleEndian, toByteOffset: 40, as: UInt32.self)
        out.storeBytes(of: UInt32(rawLength).littleEndian, toByteOffset: 44, as: UInt32.self)
        out.storeBytes(of: checksum(payload).littleEndian, toByteOffset: 48, as: UInt64.self)
        let h = checksum(UnsafeRawBufferPointer(rebasing: out[0 ..< 56]))
        out.storeBytes(of: h.littleEndian, toByteOffset: 56, as: UInt64.self)
    }

    /// Parses and checks a header of either version (magic, version, mode, header checksum, lengths
    /// within `maxRaw`). Returns nil for anything that is not a valid header.
    static func parseHeader(_ b: UnsafeRawBufferPointer, maxRaw: Int) -> Header? {
        guard b.count >= headerSizeV1,
              UInt32(littleEndian: b.loadUnaligned(fromByteOffset: 0, as: UInt32.self)) == magic,
              let mode = KVCodecMode(rawValue: b.load(fromByteOffset: 4, as: UInt8.self)) else { return nil }
        func u32(_ at: Int) -> Int { Int(UInt32(littleEndian: b.loadUnaligned(fromByteOffset: at, as: UInt32.self))) }
        func u64(_ at: Int) -> UInt64 { UInt64(littleEndian: b.loadUnaligned(fromByteOffset: at, as: UInt64.self)) }
        let size: Int, lengths: Int, parent: BlockKey?
        switch b.load(fromByteOffset: 5, as: UInt8.self) {
        case 1:
            size = headerSizeV1
            lengths = 24
            parent = nil
        case 2 where b.count >= headerSize:
            size = headerSize
            lengths = 40
            let flags = UInt16(littleEndian: b.loadUnaligned(fromByteOffset: 6, as: UInt16.self))
            parent = flags & flagHasParent != 0 ? BlockKey(lo: u64(24), hi: u64(32)) : nil
        default:
            return nil
        }
        guard u64(size - 8) == checksum(UnsafeRawBufferPointer(rebasing: b[0 ..< size - 8])) else { return nil }
        let stored = u32(lengths), raw = u32(lengths + 4)
        guard raw <= maxRaw, stored <= KVByteCodec.maxEncodedSize(rawBytes: maxRaw) else { return nil }
        return Header(mode: mode, key: BlockKey(lo: u64(8), hi: u64(16)), parent: parent, storedLength: stored,
                      rawLength: raw, payloadChecksum: u64(lengths + 8), size: size)
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
        /// The bytes scanned: the file's size, or less when it ended early while it was read.
        var size = 0
    }

    /// The bytes a scan window must hold at least: the largest record a store of `maxRaw`-byte blocks writes.
    static func largestRecord(maxRaw: Int) -> Int { headerSize + KVByteCodec.maxEncodedSize(rawBytes: maxRaw) }

    /// Scans a whole segment held in memory (`scan(size:maxRaw:windowBytes:read:)` over `b`).
    static func scan(_ b: UnsafeRawBufferPointer, maxRaw: Int, windowBytes: Int? = nil) -> ScanResult {
        let read = { (offset: Int, into: UnsafeMutableRawBufferPointer) throws(TierError) -> Int in
            let n = min(into.count, b.count - offset)
            if n > 0 { into.baseAddress!.copyMemory(from: b.baseAddress! + offset, byteCount: n) }
            return n
        }
        // Reading memory cannot fail.
        return (try? scan(size: b.count, maxRaw: maxRaw, windowBytes: windowBytes ?? b.count, read: read)) ?? ScanResult()
    }

    /// Scans a segment of `size` bytes through a window of `max(windowBytes, largestRecord(maxRaw:))`
    /// bytes that slides along it: `read(offset, buffer)` fills `buffer` from the segment's `offset`
    /// and returns the bytes read (fewer only at the end of the file, which then ends the scan there).
    /// Every record whose header and payload checksums hold is returned; every damaged region is counted
    /// and skipped (after a bad header, the scan resynchronizes at the next offset that holds a valid
    /// header). A record never spans two windows: the window moves to a record's start before reading it.
    ///
    /// - Complexity: O(size) bytes read, each at most twice; memory is the window, whatever the size.
    static func scan(size: Int, maxRaw: Int, windowBytes: Int,
                     read: (Int, UnsafeMutableRawBufferPointer) throws(TierError) -> Int) throws(TierError) -> ScanResult {
        let window = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, min(size, max(windowBytes, largestRecord(maxRaw: maxRaw)))),
                                                            alignment: 64)
        defer { window.deallocate() }
        var end = size
        var windowStart = 0, windowCount = 0
        /// The window from `off` on, holding at least `min(need, end - off)` bytes.
        func bytes(at off: Int, need: Int) throws(TierError) -> UnsafeRawBufferPointer {
            if off + min(need, end - off) > windowStart + windowCount {
                let n = min(window.count, end - off)
                let got = try read(off, UnsafeMutableRawBufferPointer(rebasing: window[0 ..< n]))
                windowStart = off
                windowCount = got
                if got < n { end = off + got }
            }
            return UnsafeRawBufferPointer(rebasing: window[(off - windowStart) ..< windowCount])
        }
        var r = ScanResult()
        var off = 0
        var garbageStart: Int? = nil
        func closeGarbage(at end: Int) {
            if let g = garbageStart { r.corrupt += 1; r.badRanges.append(g ..< end); garbageStart = nil }
        }
        while off < end {
            let head = try bytes(at: off, need: headerSize)
            guard off < end else { break }
            guard let h = parseHeader(head, maxRaw: maxRaw) else {
                if end - off < headerSizeV1 && garbageStart == nil { garbageStart = off; r.tornTail = true; break }
                if garbageStart == nil { garbageStart = off }
                off += 1
                continue
            }
            closeGarbage(at: off)
            guard h.recordLength <= end - off else {
                // A header whose payload runs past the end: a write cut short.
                garbageStart = off
                r.tornTail = true
                break
            }
            let rest = try bytes(at: off, need: h.recordLength)
            guard h.recordLength <= rest.count else {
                // The file ended while it was read (it shrank): the same as a cut write.
                garbageStart = off
                r.tornTail = true
                break
            }
            let payload = UnsafeRawBufferPointer(rebasing: rest[h.size ..< h.recordLength])
            if checksum(payload) == h.payloadChecksum {
                r.records.append(Found(header: h, offset: off))
            } else {
                r.corrupt += 1
                r.badRanges.append(off ..< off + h.recordLength)
            }
            off += h.recordLength
        }
        if garbageStart != nil {
            if !r.tornTail && end - garbageStart! < headerSizeV1 { r.tornTail = true }
            closeGarbage(at: end)
        }
        r.size = end
        return r
    }
}
