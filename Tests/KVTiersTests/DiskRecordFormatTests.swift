import Testing
import KVCache
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
        }
    }
}
