import KVCache

extension DiskBlockStore {
    /// One segment file: its descriptor (closed when the last reference goes), size and keys in write order.
    final class Segment {
        let id: UInt64
        let fd: Int32
        let path: String
        let io: SystemIO
        var size: Int
        var keys: [BlockKey] = []
        var broken = false
        init(id: UInt64, fd: Int32, path: String, io: SystemIO, size: Int) {
            self.id = id
            self.fd = fd
            self.path = path
            self.io = io
            self.size = size
        }
        deinit { io.close(fd) }
    }

    /// The file name of segment `id`: `seg-` + 16 lowercase hex digits + `.kvlog`.
    static func segmentName(_ id: UInt64) -> String {
        let hex = String(id, radix: 16)
        return "seg-" + String(repeating: "0", count: max(0, 16 - hex.count)) + hex + ".kvlog"
    }

    /// The largest segment id: ids come from file names, so they are range-checked before `id + 1`
    /// (2^48 segments of one record each would outlast any disk).
    static let maxSegmentID: UInt64 = 1 << 48

    /// The id a segment file name encodes; nil for any other name, including one that is not exactly
    /// what `segmentName` writes (upper-case or signed hex) or whose id is 0 or above `maxSegmentID`.
    static func segmentID(_ name: String) -> UInt64? {
        guard name.utf8.count == 4 + 16 + 6, name.hasPrefix("seg-"), name.hasSuffix(".kvlog"),
              let id = UInt64(name.dropFirst(4).prefix(16), radix: 16), id > 0, id <= maxSegmentID,
              segmentName(id) == name else { return nil }
        return id
    }

    /// Whether `name` is a temporary file a store or check writes (a segment being repaired, the format
    /// file being replaced): left over by a crash and deleted on open. Other `.tmp` files are not touched.
    static func isOwnTemporary(_ name: String) -> Bool {
        name == DiskTierFormat.fileName + ".tmp" || (name.hasSuffix(".tmp") && segmentID(String(name.dropLast(4))) != nil)
    }

    /// Whether `name` looks like a segment file (`seg-*.kvlog`), valid or not.
    static func looksLikeSegment(_ name: String) -> Bool { name.hasPrefix("seg-") && name.hasSuffix(".kvlog") }

    /// The largest segment file a store with blocks of up to `maxRaw` bytes writes: a store seals a
    /// segment at 64 MiB or after one record, whichever is larger. Files above it are not its segments
    /// and are never read (so no file size decides how much memory opening a store takes).
    static func maxSegmentBytes(maxRaw: Int) -> Int {
        max(64 << 20, DiskRecordFormat.headerSize + KVByteCodec.maxEncodedSize(rawBytes: maxRaw))
    }
}
