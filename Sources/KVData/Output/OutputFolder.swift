import Glibc

/// Creates the folder an output goes into: the folder-side twin of `OutputFile`.
///
/// `path` and each missing parent are made with `mkdir` (mode 0755); a `path` that exists must be a
/// folder, not a link to one, a file, a device or a FIFO, so a run as root never writes through a link.
/// An empty path is refused. Failures are `DataError.cannotWrite` naming `path` with the system's
/// reason in words (never a Foundation error code). O(components of the path).
public enum OutputFolder {
    public static func create(_ path: String) throws(DataError) {
        guard !path.isEmpty else { throw .cannotWrite(path: path, reason: "an empty path names no folder") }
        var info = stat()
        if lstat(path, &info) == 0 {
            guard info.st_mode & S_IFMT == S_IFDIR else {
                throw .cannotWrite(path: path, reason: "exists and is not a folder (a file, symlink, device or FIFO)")
            }
            return
        }
        // Parents first, then this folder; one that appears meanwhile is fine if it is a folder.
        var trimmed = Substring(path)
        while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed = trimmed.dropLast() }
        if let slash = trimmed.lastIndex(of: "/"), slash != trimmed.startIndex {
            let parent = String(trimmed[..<slash])
            if stat(parent, &info) != 0 { try create(parent) }
        }
        if mkdir(path, 0o755) != 0 {
            let code = errno
            guard code == EEXIST, lstat(path, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else {
                throw .cannotWrite(path: path, reason: String(cString: strerror(code)))
            }
        }
    }
}
