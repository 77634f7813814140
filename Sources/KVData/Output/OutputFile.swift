import Glibc

/// Writes output files: the one place that decides what may be written, as `RegularFile` decides what
/// may be read.
///
/// A `path` that exists and is not a regular file (symlink, device, FIFO, folder) is refused, so a
/// run as root never replaces `/dev/null` or follows a link. The bytes go to a temporary file in the
/// same folder, are flushed, then renamed over `path`: a failure leaves `path` as it was. O(bytes).
public enum OutputFile {
    /// Refuses a `path` that exists and is not a regular file (what `write` refuses), so that a
    /// caller can fail before long work. O(1).
    public static func checkTarget(_ path: String) throws(DataError) {
        var info = stat()
        if lstat(path, &info) == 0 && info.st_mode & S_IFMT != S_IFREG {
            throw .cannotWrite(path: path, reason: "exists and is not a regular file (symlink, device, FIFO or folder)")
        }
    }

    /// Writes `bytes` to `path` (mode 0644) through a temporary file and a rename.
    /// - Throws: `DataError.cannotWrite` naming `path`; `path` is unchanged then.
    public static func write(_ bytes: [UInt8], to path: String) throws(DataError) {
        try checkTarget(path)
        let slash = path.lastIndex(of: "/")
        let folder = slash.map { String(path[...$0]) } ?? ""
        let name = slash.map { String(path[path.index(after: $0)...]) } ?? path
        guard !name.isEmpty else { throw .cannotWrite(path: path, reason: "names a folder, not a file") }
        var template = Array((folder + "." + name + ".XXXXXX").utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { throw .cannotWrite(path: path, reason: systemReason()) }
        let temporary = String(cString: template)
        var failure: String? = nil
        bytes.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = Glibc.write(fd, raw.baseAddress! + offset, raw.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    failure = systemReason()
                    return
                }
                offset += n
            }
        }
        if failure == nil && fsync(fd) != 0 { failure = systemReason() }
        if failure == nil { _ = fchmod(fd, 0o644) }
        if close(fd) != 0 && failure == nil { failure = systemReason() }
        if failure == nil && rename(temporary, path) != 0 { failure = systemReason() }
        if let failure {
            unlink(temporary)
            throw .cannotWrite(path: path, reason: failure)
        }
    }

    private static func systemReason() -> String { String(cString: strerror(errno)) }
}
