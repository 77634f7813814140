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

    /// The id a segment file name encodes; nil for any other name.
    static func segmentID(_ name: String) -> UInt64? {
        guard name.hasPrefix("seg-"), name.hasSuffix(".kvlog"), name.count == 4 + 16 + 6 else { return nil }
        return UInt64(name.dropFirst(4).prefix(16), radix: 16)
    }
}
