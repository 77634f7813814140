#if canImport(Glibc)
import Glibc
#else
#error("Unsupported platform: the tiers need Linux (Glibc, libnuma, O_DIRECTORY, flock)")
#endif
import Synchronization

/// The one choke point for the tiers' POSIX file calls (the disk store, the sysfs reads of NUMA
/// placement, the warning line on stderr). Each call retries `EINTR`, loops over
/// short reads/writes, and turns `errno` into `TierError.system`. In debug builds an `IOFaultInjector`
/// can make writes fail (ENOSPC, EIO) to test the "not stored" paths without filling a real disk.
public struct SystemIO: Sendable {
    #if DEBUG
    /// Debug builds only: injected faults, checked before each write.
    public var faults: IOFaultInjector?
    #endif

    public init() {}

    @inline(__always)
    private static func fail(_ call: @autoclosure () -> String) -> TierError {
        let code = errno   // before the message is built
        return .system(call: call(), errno: code)
    }

    /// Opens `path` with `O_CLOEXEC` added to `flags`; files are created with `mode`.
    ///
    /// The corresponding C function is `open`.
    public func open(_ path: String, flags: Int32, mode: mode_t = 0o600) throws(TierError) -> Int32 {
        while true {
            let fd = Glibc.open(path, flags | O_CLOEXEC, mode)
            if fd >= 0 { return fd }
            if errno != EINTR { throw Self.fail("open \(path)") }
        }
    }

    /// Closes `fd`; errors are ignored (the descriptor is gone either way on Linux).
    ///
    /// The corresponding C function is `close`.
    public func close(_ fd: Int32) { _ = Glibc.close(fd) }

    /// Writes all of `bytes` at `offset`, looping over short writes.
    ///
    /// The corresponding C function is `pwrite`.
    public func pwriteAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: Int) throws(TierError) {
        #if DEBUG
        if let faults, let (code, partial) = faults.writeFault(bytes: bytes.count) {
            // A failing disk may leave part of the data behind: write half of it, then fail.
            if partial, bytes.count > 1, let base = bytes.baseAddress {
                _ = Glibc.pwrite(fd, base, bytes.count / 2, off_t(offset))
            }
            errno = code
            throw Self.fail("pwrite")
        }
        #endif
        var done = 0
        while done < bytes.count {
            let n = Glibc.pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset + done))
            if n > 0 {
                done += n
                continue
            }
            if n < 0 && errno == EINTR { continue }
            if n == 0 { errno = EIO }
            throw Self.fail("pwrite")
        }
    }

    /// Reads up to `buffer.count` bytes at `offset`; returns how many were read (fewer only at end of
    /// file).
    ///
    /// The corresponding C function is `pread`.
    public func preadFull(_ fd: Int32, _ buffer: UnsafeMutableRawBufferPointer,
                          at offset: Int) throws(TierError) -> Int {
        var done = 0
        while done < buffer.count {
            let n = Glibc.pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset + done))
            if n > 0 {
                done += n
                continue
            }
            if n == 0 { break }
            if errno == EINTR { continue }
            throw Self.fail("pread")
        }
        return done
    }

    /// Flushes `fd`'s data and metadata to the device.
    ///
    /// The corresponding C function is `fsync`.
    public func fsync(_ fd: Int32) throws(TierError) {
        #if DEBUG
        if let faults, let code = faults.syncFault() {
            errno = code
            throw Self.fail("fsync")
        }
        #endif
        while Glibc.fsync(fd) != 0 { if errno != EINTR { throw Self.fail("fsync") } }
    }

    /// Sets `fd`'s size to `size` bytes.
    ///
    /// The corresponding C function is `ftruncate`.
    public func truncate(_ fd: Int32, to size: Int) throws(TierError) {
        while Glibc.ftruncate(fd, off_t(size)) != 0 { if errno != EINTR { throw Self.fail("ftruncate") } }
    }

    /// The file's size.
    ///
    /// The corresponding C function is `fstat`.
    public func size(_ fd: Int32) throws(TierError) -> Int {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw Self.fail("fstat") }
        return Int(st.st_size)
    }

    /// Opens `path` read-only and checks that it is a regular file, without ever blocking: `O_NONBLOCK`,
    /// so a FIFO or a device named like a data file is refused instead of waited on. Returns the
    /// descriptor and the file's size.
    /// - Throws: `.system` (with the path) when it cannot be opened, `.invalidArgument` naming the path
    ///   when it is not a regular file. Nothing stays open on failure.
    ///
    /// The corresponding C functions are `open` and `fstat`.
    public func openRegularFile(_ path: String) throws(TierError) -> (fd: Int32, size: Int) {
        let fd = try open(path, flags: O_RDONLY | O_NONBLOCK)
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let error = Self.fail("fstat \(path)")
            close(fd)
            throw error
        }
        guard st.st_mode & S_IFMT == S_IFREG else {
            close(fd)
            throw .invalidArgument("\(path) is not a regular file")
        }
        return (fd, Int(st.st_size))
    }

    /// Whether `path` names a directory (following links); false when it does not exist.
    ///
    /// The corresponding C function is `stat`.
    public func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && st.st_mode & S_IFMT == S_IFDIR
    }

    /// The permission bits of `path`.
    ///
    /// The corresponding C function is `stat`.
    public func mode(_ path: String) throws(TierError) -> mode_t {
        var st = stat()
        guard stat(path, &st) == 0 else { throw Self.fail("stat \(path)") }
        return st.st_mode & 0o7777
    }

    /// Renames `from` to `to`, atomically replacing `to`.
    ///
    /// The corresponding C function is `rename`.
    public func rename(_ from: String, _ to: String) throws(TierError) {
        guard Glibc.rename(from, to) == 0 else { throw Self.fail("rename \(from) -> \(to)") }
    }

    /// Removes `path`; a missing file is not an error.
    ///
    /// The corresponding C function is `unlink`.
    public func unlink(_ path: String) throws(TierError) {
        #if DEBUG
        if let faults {
            var st = stat()
            if lstat(path, &st) == 0 { faults.freed(bytes: Int(st.st_size)) }
        }
        #endif
        guard Glibc.unlink(path) == 0 || errno == ENOENT else { throw Self.fail("unlink \(path)") }
    }

    /// Creates directory `path` with mode 0700; an existing directory is not an error.
    ///
    /// The corresponding C function is `mkdir`.
    public func makeDirectory(_ path: String) throws(TierError) {
        guard mkdir(path, 0o700) == 0 || errno == EEXIST else { throw Self.fail("mkdir \(path)") }
    }

    /// Flushes the directory entries of `dir` (after create/rename/unlink).
    ///
    /// The corresponding C functions are `open` and `fsync` on the directory.
    public func syncDirectory(_ dir: String) throws(TierError) {
        let fd = try open(dir, flags: O_RDONLY | O_DIRECTORY)
        defer { close(fd) }
        try fsync(fd)
    }

    /// The names in `dir` (without "." and "..").
    ///
    /// The corresponding C functions are `opendir`, `readdir` and `closedir`.
    public func listDirectory(_ dir: String) throws(TierError) -> [String] {
        guard let d = opendir(dir) else { throw Self.fail("opendir \(dir)") }
        defer { closedir(d) }
        var names: [String] = []
        while let entry = readdir(d) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: Int(NAME_MAX) + 1) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// Releases the lock `lockExclusive` took.
    ///
    /// The corresponding C function is `flock` with `LOCK_UN`.
    public func unlock(_ fd: Int32) { _ = flock(fd, LOCK_UN) }

    /// Takes an exclusive, non-blocking lock on `fd`.
    ///
    /// The corresponding C function is `flock` with `LOCK_EX | LOCK_NB`.
    public func lockExclusive(_ fd: Int32) throws(TierError) {
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            if errno == EINTR { continue }
            throw Self.fail("flock")
        }
    }

    /// Writes `text` to standard error in one call (a short write or an error is ignored: a warning
    /// must not fail its caller).
    ///
    /// The corresponding C function is `write` on descriptor 2.
    public func writeStandardError(_ text: String) {
        var line = text
        line.withUTF8 { bytes in _ = Glibc.write(2, bytes.baseAddress, bytes.count) }
    }
}

#if DEBUG
/// Debug builds only: makes the disk tier's writes fail on demand, as a full or failing disk would.
public final class IOFaultInjector: Sendable {
    private struct State {
        var writeBudget: Int? = nil
        var writeErrno: Int32 = ENOSPC
        /// A disk of limited room: removing a file gives its bytes back to the budget.
        var limitedDisk = false
        var failSync = false
        var injected = 0
    }
    private let state = Mutex(State())

    public init() {}

    /// After `bytes` more bytes have been written, every write fails with `code` (ENOSPC: a disk that fills).
    public func failWrites(afterBytes bytes: Int, errno code: Int32 = ENOSPC) {
        state.withLock { $0.writeBudget = bytes; $0.writeErrno = code }
    }

    /// Models a disk with `bytes` free: writes use the room up and fail with ENOSPC (writing nothing)
    /// when it is short, and unlinking a file gives its size back, as deleting files on a full disk does.
    public func limitDisk(freeBytes bytes: Int) {
        state.withLock { $0.writeBudget = bytes; $0.writeErrno = ENOSPC; $0.limitedDisk = true }
    }

    /// Makes every `fsync` fail with EIO while `on`.
    public func failSyncs(_ on: Bool) { state.withLock { $0.failSync = on } }

    /// Stops injecting faults (the disk has room again).
    public func heal() { state.withLock { $0.writeBudget = nil; $0.limitedDisk = false; $0.failSync = false } }

    /// How many faults were injected so far.
    public var injectedCount: Int { state.withLock { $0.injected } }

    /// The errno a write of `bytes` fails with (nil: it succeeds), and whether half of it is written first.
    func writeFault(bytes: Int) -> (code: Int32, partial: Bool)? {
        state.withLock { s in
            guard let budget = s.writeBudget else { return nil }
            if bytes <= budget { s.writeBudget = budget - bytes; return nil }
            if !s.limitedDisk { s.writeBudget = 0 }
            s.injected += 1
            return (s.writeErrno, !s.limitedDisk)
        }
    }

    func freed(bytes: Int) {
        state.withLock { s in
            if s.limitedDisk, let budget = s.writeBudget { s.writeBudget = budget + bytes }
        }
    }

    func syncFault() -> Int32? {
        state.withLock { s in
            guard s.failSync else { return nil }
            s.injected += 1
            return EIO
        }
    }
}
#endif
