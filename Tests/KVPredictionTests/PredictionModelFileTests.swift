import Foundation
import Glibc
import KVData
@testable import KVPrediction
import Testing

/// Model files from hostile hands: checksummed, bounded before any allocation, written safely.
@Suite("Prediction: model file limits")
struct PredictionModelFileTests {
    static let model: TextLengthModel = {
        var options = SyntheticLengths.options
        options.hashing.hashBits = 8
        return try! TextLengthTrainer.train(SyntheticLengths.examples(count: 40, seed: 3, heldOut: false), options: options)
    }()

    func failure(_ data: [UInt8]) -> LengthModelError? {
        do { _ = try TextLengthModelFile.decode(data); return nil } catch { return error }
    }

    /// `bytes` with its checksum recomputed (a crafted file, not a damaged one).
    func resealed(_ bytes: [UInt8]) -> [UInt8] {
        var out = bytes
        let sum = TextLengthModelFile.checksum(out, from: TextLengthModelFile.prefixBytes)
        TextLengthModelFile.append(UInt32(truncatingIfNeeded: sum), to: &out, at: 8)
        TextLengthModelFile.append(UInt32(truncatingIfNeeded: sum >> 32), to: &out, at: 12)
        return out
    }

    @Test func aFlippedByteFailsTheChecksum() {
        let bytes = TextLengthModelFile.encode(Self.model)
        #expect(failure(bytes) == nil)
        var flipped = bytes
        flipped[bytes.count / 2] ^= 0x10
        #expect(failure(flipped) == .corrupt("checksum mismatch (the file is damaged or was changed)"))
        var versionTwo = bytes
        versionTwo[4] = 2                 // no checksum: must be retrained
        #expect(failure(versionTwo) == .unsupportedVersion(2))
    }

    @Test func craftedHeaderIsRefusedBeforeAllocating() throws {
        // 1,000 buckets on 2^24 slots would need 64 GiB of weights.
        let bytes = TextLengthModelFile.encode(Self.model)
        let headerBytes = Int(bytes[16]) | Int(bytes[17]) << 8 | Int(bytes[18]) << 16
        var header = try #require(try JSONSerialization.jsonObject(with: Data(bytes[20..<(20 + headerBytes)])) as? [String: Any])
        header["buckets"] = ["lowerBounds": Array(0..<1000)]
        header["bucketMeans"] = Array(repeating: 1.0, count: 1000)
        var hashing = try #require(header["hashing"] as? [String: Any])
        hashing["hashBits"] = 24
        header["hashing"] = hashing
        let json = [UInt8](try JSONSerialization.data(withJSONObject: header))
        var crafted = Array(bytes[0..<16])
        TextLengthModelFile.append(UInt32(json.count), to: &crafted)
        crafted += json
        TextLengthModelFile.append(1000, to: &crafted)
        TextLengthModelFile.append(0, to: &crafted)
        let error = try #require(failure(resealed(crafted)))
        #expect(error.description.contains("over the limits"))
        // A header length past the limit.
        var long = Array(bytes[0..<16])
        TextLengthModelFile.append(UInt32.max, to: &long)
        #expect(failure(resealed(long))?.description.contains("header of") == true)
    }

    @Test func trainingRefusesNonFiniteOptions() {
        let examples = SyntheticLengths.examples(count: 10, seed: 1, heldOut: false)
        for change in [{ (o: inout TextTrainingOptions) in o.learningRate = .infinity },
                       { $0.learningRate = .nan }, { $0.l2 = .nan }, { $0.l2 = .infinity }, { $0.epochs = 0 },
                       { $0.reserveQuantile = .nan }] as [(inout TextTrainingOptions) -> Void] {
            var options = SyntheticLengths.options
            change(&options)
            #expect(throws: LengthTrainingError.self) { try TextLengthTrainer.train(examples, options: options) }
        }
    }

    @Test func saveWritesRegularFilesOnlyAndLoadReadsThem() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("kvlp-\(UInt64.random(in: 0...UInt64.max))").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let path = folder + "/m.kvlp"
        try TextLengthModelFile.save(Self.model, to: path)
        try TextLengthModelFile.save(Self.model, to: path)       // replacing a regular file is fine
        #expect(TextLengthModelFile.encode(try TextLengthModelFile.load(from: path)) == TextLengthModelFile.encode(Self.model))
        // A symlink, a FIFO and a folder are refused, and stay what they were.
        let target = folder + "/target"
        FileManager.default.createFile(atPath: target, contents: Data("keep".utf8))
        let link = folder + "/link.kvlp"
        #expect(symlink(target, link) == 0)
        let fifo = folder + "/fifo.kvlp"
        #expect(mkfifo(fifo, 0o600) == 0)
        for refused in [link, fifo, folder] {
            #expect(throws: LengthModelError.cannotWrite(path: refused, reason: "exists and is not a regular file (symlink, device, FIFO or folder)")) {
                try TextLengthModelFile.save(Self.model, to: refused)
            }
        }
        #expect(try String(contentsOfFile: target, encoding: .utf8) == "keep")
        // Loading a FIFO does not block; no temporary file is left behind.
        #expect(throws: LengthModelError.self) { try TextLengthModelFile.load(from: fifo) }
        let left = try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.hasPrefix(".") }
        #expect(left.isEmpty)
        // A damaged file names its path.
        var damaged = TextLengthModelFile.encode(Self.model)
        damaged[damaged.count - 1] ^= 1
        FileManager.default.createFile(atPath: path, contents: Data(damaged))
        #expect(throws: LengthModelError.corrupt("\(path): checksum mismatch (the file is damaged or was changed)")) {
            try TextLengthModelFile.load(from: path)
        }
    }
}
