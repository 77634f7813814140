#if canImport(Glibc)
import Glibc
#endif
import KVCache
import KVPlan
@testable import KVTiers

/// The block bytes a test stores under a key: synthetic KV seeded by the key, so any reader can check them.
func expectedBytes(for key: BlockKey, layout: KVGeometry) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: layout.bytesPerBlock)
    out.withUnsafeMutableBytes { SyntheticKV.fill($0, layout: layout, seed: key.lo ^ key.hi) }
    return out
}

/// Names of segment files in `dir`, sorted.
func segmentFiles(_ dir: String) -> [String] {
    ((try? SystemIO().listDirectory(dir)) ?? []).filter { $0.hasSuffix(".kvlog") }.sorted().map { dir + "/" + $0 }
}

func fileSize(_ path: String) -> Int {
    var st = stat()
    return stat(path, &st) == 0 ? Int(st.st_size) : -1
}

/// Overwrites one byte of a file with its complement.
func flipByte(_ path: String, at offset: Int) {
    let fd = open(path, O_RDWR)
    precondition(fd >= 0)
    var b: UInt8 = 0
    _ = pread(fd, &b, 1, off_t(offset))
    b = ~b
    _ = pwrite(fd, &b, 1, off_t(offset))
    close(fd)
}

let smallLayout = try! KVGeometry(layers: 2, kvHeads: 2, headDim: 16, dtype: .fp16, blockTokens: 8)

/// Offsets of the valid records in a segment file.
func recordOffsets(_ path: String) -> [Int] {
    let fd = open(path, O_RDONLY)
    defer { close(fd) }
    var bytes = [UInt8](repeating: 0, count: fileSize(path))
    _ = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
    return bytes.withUnsafeBytes { DiskRecordFormat.scan($0, maxRaw: 1 << 28).records.map(\.offset) }
}

/// Starts a thread that sends SIGKILL to this process after `micros` microseconds: the kill lands at an
/// arbitrary point of whatever the process is doing (a crash, as far as the disk is concerned).
func killSelf(afterMicroseconds micros: UInt32) {
    var thread = pthread_t()
    let arg = UnsafeMutableRawPointer(bitPattern: UInt(micros) + 1)
    _ = pthread_create(&thread, nil, { arg in
        usleep(UInt32(UInt(bitPattern: arg) - 1))
        kill(getpid(), SIGKILL)
        return nil
    }, arg)
}

/// A block that costs one copy to make: a fixed random pattern with the key in its first 16 bytes.
func stampedBytes(for key: BlockKey, pattern: [UInt8]) -> [UInt8] {
    var out = pattern
    out.withUnsafeMutableBytes {
        $0.storeBytes(of: key.lo, toByteOffset: 0, as: UInt64.self)
        $0.storeBytes(of: key.hi, toByteOffset: 8, as: UInt64.self)
    }
    return out
}
