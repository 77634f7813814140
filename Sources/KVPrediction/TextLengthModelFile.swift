import Foundation
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
            "unsupported model file version \(v) (this build reads version \(TextLengthModelFile.version); retrain with `kvcache predict train`)"
        }
    }
}

/// The compact file format of a `TextLengthModel`, little-endian:
///
/// ```
/// "KVLP"  u32 version (2)  u32 headerBytes  header (JSON: hashing, buckets, statistics)
/// u32 K  u32 rows  rows x (u32 slot, K x f32 weights)   -- only rows with a non-zero weight
/// ```
/// Rows never touched in training stay zero and are not stored, so the file grows with the
/// vocabulary seen, not with the hash space.
public enum TextLengthModelFile {
    static let magic: [UInt8] = Array("KVLP".utf8)
    /// 2: the hashing configuration gained `promptShape` (version 1 files hash prompts differently),
    /// the header `expectedQuantile`.
    static let version: UInt32 = 2

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
        out.reserveCapacity(16 + json.count + nonZero.count * (4 + 4 * k))
        append(version, to: &out)
        append(UInt32(json.count), to: &out)
        out += json
        append(UInt32(k), to: &out)
        append(UInt32(nonZero.count), to: &out)
        for r in nonZero {
            append(UInt32(r), to: &out)
            for c in 0..<k { append(model.weights[r * stride + c].bitPattern, to: &out) }
        }
        return out
    }

    /// Parses a file's bytes, checking every count, index and value. O(size).
    public static func decode(_ bytes: [UInt8]) throws(LengthModelError) -> TextLengthModel {
        var reader = ByteReader(bytes: bytes)
        guard try reader.bytes(4) == magic else { throw .corrupt("not a length model (bad magic)") }
        let v = try reader.u32()
        guard v == version else { throw .unsupportedVersion(v) }
        let headerBytes = Int(try reader.u32())
        let json = try reader.bytes(headerBytes)
        let header: Header
        do {
            header = try JSONDecoder().decode(Header.self, from: Data(json))
        } catch {
            throw .corrupt("unreadable header")
        }
        guard header.hashing.isValid else { throw .corrupt("invalid hashing configuration") }
        guard LengthBuckets(lowerBounds: header.buckets.lowerBounds) != nil, header.buckets.count >= 2 else {
            throw .corrupt("invalid buckets")
        }
        let k = header.buckets.count
        guard header.bucketMeans.count == k, header.reserveQuantile > 0, header.reserveQuantile < 1,
              header.expectedQuantile > 0, header.expectedQuantile < 1 else {
            throw .corrupt("header figures do not match the buckets")
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
        let stored = Int(try reader.u32())
        guard stored <= rows, reader.remaining == stored * (4 + 4 * k) else {
            throw .corrupt("weight section has the wrong size")
        }
        for _ in 0..<stored {
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

    /// Writes `model` to `path` atomically.
    public static func save(_ model: TextLengthModel, to path: String) throws(LengthModelError) {
        do {
            try Data(encode(model)).write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw .cannotWrite(path: path, reason: error.localizedDescription)
        }
    }

    /// Reads the model at `path`.
    public static func load(from path: String) throws(LengthModelError) -> TextLengthModel {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw .cannotRead(path: path, reason: error.localizedDescription)
        }
        return try decode([UInt8](data))
    }

    static func append(_ value: UInt32, to out: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { out.append(contentsOf: $0) }
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
