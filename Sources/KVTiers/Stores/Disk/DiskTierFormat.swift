#if canImport(Glibc)
import Glibc
#endif

/// The block geometry a disk tier directory was written with, kept in its `FORMAT` file, so that a store
/// opened with another block size is refused instead of dropping every record as damaged.
///
/// The file is three short text lines (`kvcache disk tier`, `block_bytes N`, `element_size E`), written to
/// `FORMAT.tmp` and renamed over `FORMAT`. Reading it takes at most `maxFileBytes` bytes, whatever the file
/// claims; a FIFO or device named `FORMAT` is refused, never waited on. Failures throw `TierError` naming
/// the path and change nothing.
struct DiskTierFormat: Equatable {
    static let fileName = "FORMAT"
    static let maxFileBytes = 256
    static let firstLine = "kvcache disk tier"

    /// The largest decoded block (`DiskStoreConfig.maxBlockBytes`).
    var blockBytes: Int
    /// Bytes per element (`DiskStoreConfig.elementSize`).
    var elementSize: Int

    var text: String { "\(Self.firstLine)\nblock_bytes \(blockBytes)\nelement_size \(elementSize)\n" }

    /// Parses `text`; nil unless it is exactly what `text` writes, with numbers in range.
    static func parse(_ text: String) -> DiskTierFormat? {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        guard lines.count == 4, lines[0] == firstLine, lines[3].isEmpty,
              lines[1].hasPrefix("block_bytes "), lines[2].hasPrefix("element_size "),
              let b = Int(lines[1].dropFirst("block_bytes ".count)), b > 0, b <= Int(UInt32.max / 2),
              let e = Int(lines[2].dropFirst("element_size ".count)), e == 1 || e == 2 else { return nil }
        return DiskTierFormat(blockBytes: b, elementSize: e)
    }

    /// The format recorded in `directory`; nil when it has no `FORMAT` file.
    /// - Throws: `.corrupt` naming the file when it exists but is not a format file (or not a regular
    ///   file), `.system` with the path when it cannot be read.
    static func read(directory: String, io: SystemIO) throws(TierError) -> DiskTierFormat? {
        let path = directory + "/" + fileName
        var st = stat()
        guard lstat(path, &st) == 0 else { return nil }
        let file: (fd: Int32, size: Int)
        do throws(TierError) { file = try io.openRegularFile(path) } catch {
            if case .invalidArgument = error { throw .corrupt("\(path) is not a disk tier format file") }
            throw error
        }
        defer { io.close(file.fd) }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: maxFileBytes, alignment: 1)
        defer { buffer.deallocate() }
        let n = try io.preadFull(file.fd, buffer, at: 0)
        guard n < maxFileBytes, let format = parse(String(decoding: buffer[0 ..< n], as: UTF8.self)) else {
            throw .corrupt("\(path) is not a disk tier format file")
        }
        return format
    }

    /// Records this format in `directory` (temporary file, fsync, rename, fsync of the directory).
    func write(directory: String, io: SystemIO) throws(TierError) {
        let path = directory + "/" + Self.fileName
        let tmp = path + ".tmp"
        let fd = try io.open(tmp, flags: O_WRONLY | O_CREAT | O_TRUNC)
        do throws(TierError) {
            let bytes = Array(text.utf8)
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 1)
            defer { buffer.deallocate() }
            buffer.copyBytes(from: bytes)
            try io.pwriteAll(fd, UnsafeRawBufferPointer(buffer), at: 0)
            try io.fsync(fd)
        } catch {
            io.close(fd)
            try? io.unlink(tmp)
            throw error.naming(tmp)
        }
        io.close(fd)
        do throws(TierError) { try io.rename(tmp, path) } catch {
            try? io.unlink(tmp)
            throw error
        }
        try? io.syncDirectory(directory)
    }

    /// "blocks of up to N bytes (element size E)", for messages.
    var summary: String { "blocks of up to \(blockBytes) bytes (element size \(elementSize))" }
}
