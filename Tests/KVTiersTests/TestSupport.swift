#if canImport(Glibc)
import Glibc
#endif
import KVCache
@testable import KVTiers

/// A fresh temporary directory, removed with everything in it by `remove()`.
struct TempDirectory: ~Copyable {
    let path: String

    init(_ tag: String = "kvtiers") {
        var template = Array("/tmp/\(tag)-XXXXXX".utf8CString)
        let p = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(p != nil, "mkdtemp failed")
        path = String(cString: p!)
    }

    deinit { Self.removeTree(path) }

    static func removeTree(_ path: String) {
        if let names = try? SystemIO().listDirectory(path) {
            for n in names {
                let child = path + "/" + n
                var st = stat()
                if lstat(child, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR { removeTree(child) } else { unlink(child) }
            }
        }
        rmdir(path)
    }
}

/// The block bytes a test stores under a key: synthetic KV seeded by the key, so any reader can check them.
func expectedBytes(for key: BlockKey, layout: KVLayout) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: layout.bytesPerBlock)
    out.withUnsafeMutableBytes { SyntheticKV.fill($0, layout: layout, seed: key.lo ^ key.hi) }
    return out
}

func testKey(_ i: Int, salt: UInt64 = 0) -> BlockKey {
    var r = SplitMix64(seed: UInt64(i) &+ salt &* 0x9E37)
    return BlockKey(lo: r.next(), hi: r.next())
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

let smallLayout = try! KVLayout(layers: 2, kvHeads: 2, headDim: 16, dtype: .fp16, blockTokens: 8)

/// Offsets of the valid records in a segment file.
func recordOffsets(_ path: String) -> [Int] {
    let fd = open(path, O_RDONLY)
    defer { close(fd) }
    var bytes = [UInt8](repeating: 0, count: fileSize(path))
    _ = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
    return bytes.withUnsafeBytes { DiskRecordFormat.scan($0, maxRaw: 1 << 28).records.map(\.offset) }
}
