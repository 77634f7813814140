import Glibc

/// Opens input files for the readers: the one place that decides what may be read.
///
/// Only regular files are read by path. A folder, FIFO, socket or device is refused before a byte is
/// read (a FIFO is opened without blocking, so a pipe with no writer cannot hang the caller), and `-`
/// is refused by `open`: a reader may read its file twice (format detection, then the records). Standard
/// input is opened on purpose only, by `openStandardInput`, for the readers that stream it once
/// (`TraceLoader.load(path: "-")`). O(1); the caller owns (and `fclose`s) the returned stream.
public enum RegularFile {
    /// The stream and size in bytes of the regular file at `path`.
    ///
    /// - Throws: `DataError.cannotRead` with a one-line reason naming `path`.
    public static func open(_ path: String) throws(DataError) -> (file: UnsafeMutablePointer<FILE>, bytes: Int) {
        if path == "-" { throw .cannotRead(path: path, reason: "standard input is not supported here; give a file") }
        let fd = Glibc.open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { throw .cannotRead(path: path, reason: String(cString: strerror(errno))) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw .cannotRead(path: path, reason: reason)
        }
        let kind = info.st_mode & S_IFMT
        guard kind == S_IFREG else {
            close(fd)
            throw .cannotRead(path: path, reason: kind == S_IFDIR ? "is a folder, not a file"
                                  : "not a regular file (pipes, sockets and devices are not supported)")
        }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
        guard let file = fdopen(fd, "rb") else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw .cannotRead(path: path, reason: reason)
        }
        return (file, Int(info.st_size))
    }

    /// Every byte of the regular file at `path`, as stored (no gzip inflation), refused past `maxBytes`
    /// (checked on its size before reading, and again while reading, should it grow).
    ///
    /// - Throws: `DataError.cannotRead` naming `path`. O(bytes); memory: the file, at most `maxBytes`.
    public static func readAll(_ path: String, maxBytes: Int) throws(DataError) -> [UInt8] {
        let (file, size) = try open(path)
        defer { fclose(file) }
        guard size <= maxBytes else { throw .cannotRead(path: path, reason: "larger than \(maxBytes) bytes (the limit)") }
        var bytes = [UInt8](repeating: 0, count: size + 1)
        let n = bytes.withUnsafeMutableBytes { fread($0.baseAddress, 1, $0.count, file) }
        if ferror(file) != 0 { throw .cannotRead(path: path, reason: String(cString: strerror(errno))) }
        guard n <= size else { throw .cannotRead(path: path, reason: "changed while it was read") }
        bytes.removeLast(bytes.count - n)
        return bytes
    }

    /// The name standard input goes by in paths (`--trace -`) and in error messages.
    public static let standardInputPath = "-"

    /// A stream on a duplicate of standard input, whatever it is (a pipe, a redirected file), except a
    /// terminal: nobody types a trace, and reading one would wait forever.
    ///
    /// - Throws: `DataError.cannotRead` naming `-`.
    public static func openStandardInput() throws(DataError) -> UnsafeMutablePointer<FILE> {
        guard isatty(0) == 0 else {
            throw .cannotRead(path: standardInputPath, reason: "standard input is a terminal; pipe or redirect the data into it")
        }
        let fd = dup(0)
        guard fd >= 0 else { throw .cannotRead(path: standardInputPath, reason: String(cString: strerror(errno))) }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        guard let file = fdopen(fd, "rb") else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw .cannotRead(path: standardInputPath, reason: reason)
        }
        return file
    }
}
