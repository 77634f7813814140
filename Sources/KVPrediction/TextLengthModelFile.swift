import CXXHash
import Foundation
import Glibc
import KVData
import KVScheduler

/// Why a model file could not be written or read.
public enum LengthModelError: Error, Equatable, CustomStringConvertible {
    case cannotWrite(path: String, reason: String)
    case cannotRead(path: String, reason: String)
    /// The file is not a model file, or is damaged; the reason says where.
    case corrupt(String)
    case unsupportedVersion(UInt32)

    public var description: String {
        switch self {
        case let .cannotWrite(path, reason): "cannot write \(path): \(reason)"
        case let .cannotRead(path, reason): "cannot read \(path): \(reason)"
        case let .corrupt(reason): "corrupt model file: \(reason)"
        case let .unsupportedVersion(v):
            "unsupported model file version \(v) (this build reads version \(TextLengthModelFile.version), which has a checksum; retrain with `kvcache predict train`)"
        }
    }
}

/// The compact file format of a `TextLengthModel`, little-endian:
///
/// ```
/// "KVLP"  u32 version (3)  u64 checksum (XXH3-64 of everything after it)
/// u32 headerBytes  header (JSON: hashing, buckets, statistics)
/// u32 K  u32 rows  rows x (u32 slot, K x f32 weights)   -- only rows with a non-zero weight
/// ```
/// Rows never touched in training stay zero and are not stored, so the file grows with the
/// vocabulary seen, not with the hash space.
///
/// Reading checks, before any allocation the file sizes: the file is regular and at most
/// `maxFileBytes`, the checksum matches, the header is at most `maxHeaderBytes` with at most
/// `maxBuckets` buckets and at most `maxWeightFloats` weights, every figure finite and in range.
/// Writing goes to a temporary file in the target's folder, then `rename`, and refuses a target
/// that exists but is not a regular file (symlink, device, FIFO, folder). Every failure is a
/// `LengthModelError`, one line naming the path.
public enum TextLengthModelFile {
    static let magic: [UInt8] = Array("KVLP".utf8)
    /// 3: a checksum after the version. 2: the hashing configuration gained `promptShape` (version 1
    /// files hash prompts differently), the header `expectedQuantile`. Older versions are refused
    /// with a request to retrain.
    static let version: UInt32 = 3
    /// Bytes before the checksummed payload: magic, version, checksum.
    static let prefixBytes = 16
    /// Most bytes of the JSON header: 1 MiB.
    public static let maxHeaderBytes = 1 << 20
    /// Most length buckets: 64.
    public static let maxBuckets = 64
    /// Most weights (`2^hashBits x rowStride` floats): 2^29, 2 GiB.
    public static let maxWeightFloats = 1 << 29
    /// Largest model file: the prefix, the largest header and weight section.
    public static let maxFileBytes = 16 + 4 + maxHeaderBytes + 8 + (1 << 24) * 4 + maxWeightFloats * 4

    /// Whether a model of this shape is within the limits (`maxBuckets`, `maxWeightFloats`). O(1).
    public static func sizeIsAllowed(hashing: FeatureHashingConfig, buckets: LengthBuckets) -> Bool {
        guard hashing.isValid, (2...maxBuckets).contains(buckets.count) else { return false }
        return (1 << hashing.hashBits) * ((buckets.count + 7) & ~7) <= maxWeightFloats
    }

    struct Header: Codable {
        var hashing: FeatureHashingConfig
        var buckets: LengthBuckets
        var bucketMeans: [Float]
        var topValue: Float
        var reserveQuantile: Double
        var expectedStatistic: ExpectedStatistic
        var expectedQuantile: Double
        var trainingMean: Double
        var trainingMedian: Double
        var trainingQuantile: Double
        var trainingExamples: Int
    }

    /// The file's bytes. O(weights).
    public static func encode(_ model: TextLengthModel) -> [UInt8] {
        let header = Header(hashing: model.hashing, buckets: model.buckets, bucketMeans: model.bucketMeans,
                            topValue: model.topValue, reserveQuantile: model.reserveQuantile,
                            expectedStatistic: model.expectedStatistic, expectedQuantile: model.expectedQuantile,
                            trainingMean: model.trainingMean,
                            trainingMedian: model.trainingMedian, trainingQuantile: model.trainingQuantile,
                            trainingExamples: model.trainingExamples)
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        // Encoding plain numbers, strings and arrays cannot fail.
        let json = [UInt8]((try? encoder.encode(header)) ?? Data())
        let k = model.buckets.count
        let stride = model.rowStride
        let rows = model.weights.count / stride
        var nonZero: [Int] = []
        for r in 0..<rows where (0..<k).contains(where: { model.weights[r * stride + $0] != 0 }) { nonZero.append(r) }
        var out = magic
        out.reserveCapacity(prefixBytes + 12 + json.count + nonZero.count * (4 + 4 * k))
        append(version, to: &out)
        append(UInt32(0), to: &out)
        append(UInt32(0), to: &out)
        append(UInt32(json.count), to: &out)
        out += json
        append(UInt32(k), to: &out)
        append(UInt32(nonZero.count), to: &out)
        for r in nonZero {
            append(UInt32(r), to: &out)
            for c in 0..<k { append(model.weights[r * stride + c].bitPattern, to: &out) }
        }
        let sum = checksum(out, from: prefixBytes)
        append(UInt32(truncatingIfNeeded: sum), to: &out, at: 8)
        append(UInt32(truncatingIfNeeded: sum >> 32), to: &out, at: 12)
        return out
    }

    /// XXH3-64 of `bytes[start...]`. O(n).
    static func checksum(_ bytes: [UInt8], from start: Int) -> UInt64 {
        bytes.withUnsafeBufferPointer { b in XXH3_64bits(b.baseAddress! + start, b.count - start) }
    }

    /// Parses a file's bytes, checking the checksum and every count, index and value before the
    /// allocation it sizes. O(size).
    public static func decode(_ bytes: [UInt8]) throws(LengthModelError) -> TextLengthModel {
        var reader = ByteReader(bytes: bytes)
        guard try reader.bytes(4) == magic else { throw .corrupt("not a length model (bad magic)") }
        let v = try reader.u32()
        guard v == version else { throw .unsupportedVersion(v) }
        let stored = UInt64(try reader.u32()) | UInt64(try reader.u32()) << 32
        guard checksum(bytes, from: prefixBytes) == stored else {
            throw .corrupt("checksum mismatch (the file is damaged or was changed)")
        }
        let headerBytes = Int(try reader.u32())
        guard headerBytes <= maxHeaderBytes else { throw .corrupt("header of \(headerBytes) bytes (the limit is \(maxHeaderBytes))") }
        let json = try reader.bytes(headerBytes)
        let header: Header
        do {
            header = try JSONDecoder().decode(Header.self, from: Data(json))
        } catch {
            throw .corrupt("unreadable header")
        }
        guard header.hashing.isValid else { throw .corrupt("invalid hashing configuration") }
        guard LengthBuckets(lowerBounds: header.buckets.lowerBounds) != nil, header.buckets.count >= 2,
              header.buckets.lowerBounds.last! <= DataLimits.maxTokensPerRequest else {
            throw .corrupt("invalid buckets")
        }
        guard sizeIsAllowed(hashing: header.hashing, buckets: header.buckets) else {
            throw .corrupt("\(header.buckets.count) buckets x 2^\(header.hashing.hashBits) slots is over the limits (\(maxBuckets) buckets, \(maxWeightFloats) weights)")
        }
        let k = header.buckets.count
        guard header.bucketMeans.count == k, header.reserveQuantile > 0, header.reserveQuantile < 1,
              header.expectedQuantile > 0, header.expectedQuantile < 1 else {
            throw .corrupt("header figures do not match the buckets")
        }
        let figures = header.bucketMeans.map(Double.init) + [Double(header.topValue), header.trainingMean,
                                                              header.trainingMedian, header.trainingQuantile]
        guard figures.allSatisfy({ $0.isFinite && $0 >= 0 }), header.trainingExamples >= 0 else {
            throw .corrupt("negative or non-finite figure in the header")
        }
        guard Int(try reader.u32()) == k else { throw .corrupt("bucket count mismatch") }
        var model = TextLengthModel(hashing: header.hashing, buckets: header.buckets,
                                    reserveQuantile: header.reserveQuantile,
                                    expectedStatistic: header.expectedStatistic,
                                    expectedQuantile: header.expectedQuantile)
        model.bucketMeans = header.bucketMeans
        model.topValue = header.topValue
        model.trainingMean = header.trainingMean
        model.trainingMedian = header.trainingMedian
        model.trainingQuantile = header.trainingQuantile
        model.trainingExamples = header.trainingExamples
        let rows = 1 << header.hashing.hashBits
        let storedRows = Int(try reader.u32())
        guard storedRows <= rows, reader.remaining == storedRows * (4 + 4 * k) else {
            throw .corrupt("weight section has the wrong size")
        }
        for _ in 0..<storedRows {
            let r = Int(try reader.u32())
            guard r < rows else { throw .corrupt("row \(r) outside the hash space") }
            for c in 0..<k {
                let w = Float(bitPattern: try reader.u32())
                guard w.isFinite else { throw .corrupt("non-finite weight in row \(r)") }
                model.weights[r * model.rowStride + c] = w
            }
        }
        return model
    }

    /// Writes `model` to `path`: to a temporary file in the same folder, flushed, then renamed over
    /// `path`, so that a failure leaves `path` as it was. A `path` that exists and is not a regular
    /// file (symlink, device, FIFO, folder) is refused.
    public static func save(_ model: TextLengthModel, to path: String) throws(LengthModelError) {
        do { try OutputFile.write(encode(model), to: path) } catch { throw wrap(error, path) }
    }

    /// Refuses a `path` that exists and is not a regular file (what `save` refuses), so that a caller
    /// can fail before training. O(1).
    public static func checkTarget(_ path: String) throws(LengthModelError) {
        do { try OutputFile.checkTarget(path) } catch { throw wrap(error, path) }
    }

    private static func wrap(_ error: DataError, _ path: String) -> LengthModelError {
        if case let .cannotWrite(_, reason) = error { return .cannotWrite(path: path, reason: reason) }
        return .cannotWrite(path: path, reason: error.description)
    }

    /// Reads the model at `path` (a regular file of at most `maxFileBytes`).
    public static func load(from path: String) throws(LengthModelError) -> TextLengthModel {
        let opened: (file: UnsafeMutablePointer<FILE>, bytes: Int)
        do { opened = try RegularFile.open(path) } catch {
            if case let .cannotRead(_, reason) = error { throw .cannotRead(path: path, reason: reason) }
            throw .cannotRead(path: path, reason: error.description)
        }
        defer { fclose(opened.file) }
        guard opened.bytes <= maxFileBytes else {
            throw .cannotRead(path: path, reason: "\(opened.bytes) bytes is larger than any model file (\(maxFileBytes))")
        }
        let bytes = [UInt8](unsafeUninitializedCapacity: opened.bytes) { buffer, count in
            count = opened.bytes == 0 ? 0 : fread(buffer.baseAddress!, 1, opened.bytes, opened.file)
        }
        guard bytes.count == opened.bytes else { throw .cannotRead(path: path, reason: "short read") }
        do { return try decode(bytes) } catch {
            if case let .corrupt(reason) = error { throw .corrupt("\(path): \(reason)") }
            throw .cannotRead(path: path, reason: error.description)
        }
    }


    static func append(_ value: UInt32, to out: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { out.append(contentsOf: $0) }
    }

    /// Overwrites the 4 bytes at `offset` with `value`.
    static func append(_ value: UInt32, to out: inout [UInt8], at offset: Int) {
        for i in 0..<4 { out[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt32(i))) }
    }

    struct ByteReader {
        let bytes: [UInt8]
        var offset = 0
        var remaining: Int { bytes.count - offset }

        mutating func bytes(_ n: Int) throws(LengthModelError) -> [UInt8] {
            guard n >= 0, n <= remaining else { throw .corrupt("truncated at byte \(offset)") }
            defer { offset += n }
            return Array(bytes[offset..<offset + n])
        }

        mutating func u32() throws(LengthModelError) -> UInt32 {
            guard remaining >= 4 else { throw .corrupt("truncated at byte \(offset)") }
            var v: UInt32 = 0
            for i in 0..<4 { v |= UInt32(bytes[offset + i]) << (8 * UInt32(i)) }
            offset += 4
            return v
        }
    }
}
