#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// The one choke point for the POSIX file calls of the disk tier. Each call retries `EINTR`, loops over
/// short reads/writes, and turns `errno` into `TierError.system`. In debug builds an `IOFaultInjector`
/// can make writes fail (ENOSPC, EIO) to test the "not stored" paths without filling a real disk.
public struct SystemIO: Sendable {
    #if DEBUG
    /// Debug builds only: injected faults, checked before each write.
    public var faults: IOFaultInjector?
    #endif

    public init() {}

    @inline(__always)
    private static func fail(_ call: String) -> TierError { .system(call: call, errno: errno) }

    /// `open(2)` with `O_CLOEXEC`; files are created with `mode`.
    public func open(_ path: String, flags: Int32, mode: mode_t = 0o600) throws(TierError) -> Int32 {
        while true {
            let fd = Glibc.open(path, flags | O_CLOEXEC, mode)
            if fd >= 0 { return fd }
            if errno != EINTR { throw Self.fail("open") }
        }
    }

    /// `close(2)`; errors are ignored (the descriptor is gone either way on Linux).
    public func close(_ fd: Int32) { _ = Glibc.close(fd) }

    /// Writes all of `bytes` at `offset` with `pwrite(2)`.
    public func pwriteAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: Int) throws(TierError) {
        #if DEBUG
        if let faults, let code = faults.writeFault(bytes: bytes.count) {
            // A failing disk may leave part of the data behind: write half of it, then fail.
            if bytes.count > 1, let base = bytes.baseAddress { _ = Glibc.pwrite(fd, base, bytes.count / 2, off_t(offset)) }
            errno = code
            throw Self.fail("pwrite")
        }
        #endif
        var done = 0
        while done < bytes.count {
            let n = Glibc.pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset + done))
            if n > 0 { done += n; continue }
            if n < 0 && errno == EINTR { continue }
            if n == 0 { errno = EIO }
            throw Self.fail("pwrite")
        }
    }

    /// Reads up to `buffer.count` bytes at `offset`; returns how many were read (fewer only at end of file).
    public func preadFull(_ fd: Int32, _ buffer: UnsafeMutableRawBufferPointer, at offset: Int) throws(TierError) -> Int {
        var done = 0
        while done < buffer.count {
            let n = Glibc.pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset + done))
            if n > 0 { done += n; continue }
            if n == 0 { break }
            if errno == EINTR { continue }
            throw Self.fail("pread")
        }
        return done
    }

    /// `fsync(2)`.
    public func fsync(_ fd: Int32) throws(TierError) {
        #if DEBUG
        if let faults, let code = faults.syncFault() { errno = code; throw Self.fail("fsync") }
        #endif
        while Glibc.fsync(fd) != 0 { if errno != EINTR { throw Self.fail("fsync") } }
    }

    /// `ftruncate(2)`.
    public func truncate(_ fd: Int32, to size: Int) throws(TierError) {
        while Glibc.ftruncate(fd, off_t(size)) != 0 { if errno != EINTR { throw Self.fail("ftruncate") } }
    }

    /// The file's size from `fstat(2)`.
    public func size(_ fd: Int32) throws(TierError) -> Int {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw Self.fail("fstat") }
        return Int(st.st_size)
    }

    /// The permission bits of `path` from `stat(2)`.
    public func mode(_ path: String) throws(TierError) -> mode_t {
        var st = stat()
        guard stat(path, &st) == 0 else { throw Self.fail("stat") }
        return st.st_mode & 0o7777
    }

    /// `rename(2)`: atomically replaces `to`.
    public func rename(_ from: String, _ to: String) throws(TierError) {
        guard Glibc.rename(from, to) == 0 else { throw Self.fail("rename") }
    }

    /// `unlink(2)`; a missing file is not an error.
    public func unlink(_ path: String) throws(TierError) {
        guard Glibc.unlink(path) == 0 || errno == ENOENT else { throw Self.fail("unlink") }
    }

    /// `mkdir(2)` with mode 0700; an existing directory is not an error.
    public func makeDirectory(_ path: String) throws(TierError) {
        guard mkdir(path, 0o700) == 0 || errno == EEXIST else { throw Self.fail("mkdir") }
    }

    /// Flushes the directory entry of `dir` (after create/rename/unlink) with `fsync(2)` on the directory.
    public func syncDirectory(_ dir: String) throws(TierError) {
        let fd = try open(dir, flags: O_RDONLY | O_DIRECTORY)
        defer { close(fd) }
        try fsync(fd)
    }

    /// The names in `dir` (without "." and "..").
    public func listDirectory(_ dir: String) throws(TierError) -> [String] {
        guard let d = opendir(dir) else { throw Self.fail("opendir") }
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

    /// Releases a `flock(2)`.
    public func unlock(_ fd: Int32) { _ = flock(fd, LOCK_UN) }

    /// Takes an exclusive, non-blocking `flock(2)` on `fd`.
    public func lockExclusive(_ fd: Int32) throws(TierError) {
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            if errno == EINTR { continue }
            throw Self.fail("flock")
        }
    }
}

#if DEBUG
/// Debug builds only: makes the disk tier's writes fail on demand, as a full or failing disk would.
public final class IOFaultInjector: Sendable {
    private struct State { var writeBudget: Int? = nil; var writeErrno: Int32 = ENOSPC; var failSync = false; var injected = 0 }
    private let state = Mutex(State())

    public init() {}

    /// After `bytes` more bytes have been written, every write fails with `code` (ENOSPC: a disk that fills).
    public func failWrites(afterBytes bytes: Int, errno code: Int32 = ENOSPC) {
        state.withLock { $0.writeBudget = bytes; $0.writeErrno = code }
    }

    /// Makes every `fsync` fail with EIO while `on`.
    public func failSyncs(_ on: Bool) { state.withLock { $0.failSync = on } }

    /// Stops injecting faults (the disk has room again).
    public func heal() { state.withLock { $0.writeBudget = nil; $0.failSync = false } }

    /// How many faults were injected so far.
    public var injectedCount: Int { state.withLock { $0.injected } }

    func writeFault(bytes: Int) -> Int32? {
        state.withLock { s in
            guard let budget = s.writeBudget else { return nil }
            if bytes <= budget { s.writeBudget = budget - bytes; return nil }
            s.writeBudget = 0; s.injected += 1
            return s.writeErrno
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
