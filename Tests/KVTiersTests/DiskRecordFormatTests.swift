#if canImport(Glibc)
import Glibc
#endif
import Testing
import KVCache
import KVTestSupport
@testable import KVTiers

@Suite("Disk record format")
struct DiskRecordFormatTests {
    struct Record { var key: BlockKey; var payload: [UInt8]; var bytes: [UInt8] }

    static func record(_ key: BlockKey, payloadSize: Int, rng: inout SplitMix64) -> Record {
        let payload = (0 ..< payloadSize).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        var bytes = [UInt8](repeating: 0, count: DiskRecordFormat.headerSize + payloadSize)
        bytes.withUnsafeMutableBytes { out in
            payload.withUnsafeBytes { p in
                DiskRecordFormat.writeHeader(into: out, mode: .raw, key: key, rawLength: payloadSize, payload: p)
            }
            out.baseAddress!.advanced(by: DiskRecordFormat.headerSize).copyMemory(from: payload, byteCount: payloadSize)
        }
        return Record(key: key, payload: payload, bytes: bytes)
    }

    /// Property: whatever damage a segment takes (flipped bytes, inserted garbage, a cut tail), a scan
    /// returns only records that are byte-for-byte ones that were written, and finds every record whose
    /// bytes were not touched (it resynchronizes after damage).
    @Test(arguments: [UInt64(21), 22, 23, 24, 25])
    func scanReturnsOnlyIntactRecordsAndFindsAllUntouchedOnes(seed: UInt64) {
        var rng = SplitMix64(seed: seed)
        for _ in 0 ..< 30 {
            let records = (0 ..< 12).map { i in Self.record(testKey(i, salt: seed), payloadSize: 1 + Int(rng.next() % 300), rng: &rng) }
            var segment: [UInt8] = []
            var spans: [Range<Int>] = []
            var touched = [Bool](repeating: false, count: records.count)
            for r in records { spans.append(segment.count ..< segment.count + r.bytes.count); segment += r.bytes }
            // Damage: flips, a garbage insertion, maybe a cut tail.
            for _ in 0 ..< Int(rng.next() % 4) {
                let at = Int(rng.next() % UInt64(segment.count))
                segment[at] ^= UInt8(1 + rng.next() % 255)
                for (i, s) in spans.enumerated() where s.contains(at) { touched[i] = true }
            }
            if rng.next() % 2 == 0 {
                let i = Int(rng.next() % UInt64(records.count))
                let garbage = (0 ..< Int(1 + rng.next() % 100)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                segment.insert(contentsOf: garbage, at: spans[i].lowerBound)
                for j in i ..< spans.count { spans[j] = spans[j].lowerBound + garbage.count ..< spans[j].upperBound + garbage.count }
            }
            if rng.next() % 2 == 0 {
                let cut = Int(rng.next() % UInt64(spans.last!.count))
                segment.removeLast(cut)
                if cut > 0 { touched[touched.count - 1] = true }
            }
            let found = segment.withUnsafeBytes { DiskRecordFormat.scan($0, maxRaw: 1 << 20) }
            let byKey = Dictionary(uniqueKeysWithValues: records.map { ($0.key, $0) })
            for f in found.records {
                guard let original = byKey[f.header.key] else { Issue.record("a record nobody wrote"); continue }
                let got = Array(segment[f.offset ..< f.offset + f.header.recordLength])
                #expect(got == original.bytes, "a damaged record was returned")
            }
            let foundKeys = Set(found.records.map(\.header.key))
            for (i, r) in records.enumerated() where !touched[i] {
                #expect(foundKeys.contains(r.key), "an intact record was missed")
            }
            let damaged = touched.contains(true)
            if damaged { #expect(found.corrupt > 0) }
            // The window that slides along a segment on open finds exactly what one whole read finds,
            // even when it holds little more than one record (so most records start near its end).
            let whole = segment.withUnsafeBytes { DiskRecordFormat.scan($0, maxRaw: 400) }
            let windowed = segment.withUnsafeBytes { DiskRecordFormat.scan($0, maxRaw: 400, windowBytes: 1) }
            #expect(DiskRecordFormat.largestRecord(maxRaw: 400) < 1024)   // segments of about 2.5 KB: several windows
            #expect(windowed.records.map(\.offset) == whole.records.map(\.offset))
            #expect(windowed.records.map(\.header) == whole.records.map(\.header))
            #expect(windowed.corrupt == whole.corrupt && windowed.badRanges == whole.badRanges
                    && windowed.tornTail == whole.tornTail && windowed.size == segment.count)
        }
    }

    /// A version 1 record (48-byte header, no parent), as stores before parents were kept wrote them.
    static func recordV1(_ key: BlockKey, payload: [UInt8]) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: DiskRecordFormat.headerSizeV1 + payload.count)
        bytes.withUnsafeMutableBytes { out in
            out.storeBytes(of: DiskRecordFormat.magic.littleEndian, toByteOffset: 0, as: UInt32.self)
            out.storeBytes(of: KVCodecMode.raw.rawValue, toByteOffset: 4, as: UInt8.self)
            out.storeBytes(of: UInt8(1), toByteOffset: 5, as: UInt8.self)
            out.storeBytes(of: key.lo.littleEndian, toByteOffset: 8, as: UInt64.self)
            out.storeBytes(of: key.hi.littleEndian, toByteOffset: 16, as: UInt64.self)
            out.storeBytes(of: UInt32(payload.count).littleEndian, toByteOffset: 24, as: UInt32.self)
            out.storeBytes(of: UInt32(payload.count).littleEndian, toByteOffset: 28, as: UInt32.self)
            payload.withUnsafeBytes { p in
                out.storeBytes(of: DiskRecordFormat.checksum(p).littleEndian, toByteOffset: 32, as: UInt64.self)
                (out.baseAddress! + DiskRecordFormat.headerSizeV1).copyMemory(from: p.baseAddress!, byteCount: p.count)
            }
            let h = DiskRecordFormat.checksum(UnsafeRawBufferPointer(rebasing: out[0 ..< 40]))
            out.storeBytes(of: h.littleEndian, toByteOffset: 40, as: UInt64.self)
        }
        return bytes
    }

    /// Version 2 headers keep the parent (or its absence); version 1 records still read, with no parent;
    /// a version the store does not know is not a record.
    @Test func parentsRoundTripAndVersion1StillReads() {
        var rng = SplitMix64(seed: 77)
        let key = testKey(1, salt: 77), parent = testKey(2, salt: 77)
        let payload = (0 ..< 40).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        for p in [parent, nil] as [BlockKey?] {
            var bytes = [UInt8](repeating: 0, count: DiskRecordFormat.headerSize + payload.count)
            bytes.withUnsafeMutableBytes { out in
                payload.withUnsafeBytes { DiskRecordFormat.writeHeader(into: out, mode: .raw, key: key, parent: p, rawLength: 40, payload: $0) }
            }
            let h = bytes.withUnsafeBytes { DiskRecordFormat.parseHeader($0, maxRaw: 1 << 20) }
            #expect(h?.key == key && h?.parent == p && h?.size == 64 && h?.recordLength == 64 + 40)
        }
        var v1 = Self.recordV1(key, payload: payload)
        let h1 = v1.withUnsafeBytes { DiskRecordFormat.scan($0, maxRaw: 1 << 20) }
        #expect(h1.records.count == 1 && h1.corrupt == 0)
        #expect(h1.records.first?.header.parent == nil && h1.records.first?.header.recordLength == 48 + 40)
        v1[5] = 9   // an unknown version
        #expect(v1.withUnsafeBytes { DiskRecordFormat.parseHeader($0, maxRaw: 1 << 20) } == nil)
    }

    /// A store opened on a segment of version 1 records serves them (no parent); new records name theirs.
    @Test func storeReadsVersion1Segments() throws {
        let dir = TempDirectory()
        let layout = smallLayout
        let old = testKey(5, salt: 78), new = testKey(6, salt: 78)
        let oldBytes = expectedBytes(for: old, layout: layout)
        let segment = Self.recordV1(old, payload: oldBytes)
        let path = dir.path + "/" + DiskBlockStore.segmentName(1)
        let fd = open(path, O_WRONLY | O_CREAT, 0o600)
        _ = segment.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        let store = try DiskBlockStore(DiskStoreConfig(directory: dir.path, capacityBytes: 1 << 20, layout: layout))
        defer { store.close() }
        #expect(store.contains(old) && store.parent(of: old) == nil)
        var out = [UInt8](repeating: 0, count: layout.bytesPerBlock)
        #expect(out.withUnsafeMutableBytes { store.read(old, into: $0) } == .hit && out == oldBytes)
        _ = expectedBytes(for: new, layout: layout).withUnsafeBytes { store.put(new, parent: old, bytes: $0) }
        #expect(store.parent(of: new) == old)
        #expect(store.blocksWithParents().map(\.key) == [old, new])
    }
}
