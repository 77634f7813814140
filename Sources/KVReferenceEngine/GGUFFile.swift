#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A GGUF version 3 file, memory-mapped read-only: its metadata, its tensor directory and lent access to
/// each tensor's bytes.
///
/// Opening parses and validates the whole header (magic, version, every metadata entry, every tensor
/// info, alignment, that each tensor's bytes lie inside the file without overlapping another) in
/// O(header bytes); tensor data is never copied. A truncated or malformed file is a `GGUFError` naming
/// what is wrong and where. Tensor types other than F32, F16, Q4_1 and Q8_0 are refused by name.
///
/// Format: `"GGUF"`, u32 version, u64 tensor count, u64 metadata count, metadata entries (string key,
/// u32 value type, value), tensor infos (string name, u32 n_dims, u64 dims, u32 ggml type, u64 offset),
/// padding to `general.alignment` (default 32), then the tensor data. Little-endian throughout.
public final class GGUFFile: @unchecked Sendable {
    // Sendable: every field is a `let`; the mapping behind `base` is read-only and lives as long as the file.
    /// Where one tensor lies and what it holds. `dims[0]` is the innermost (row) length, as in ggml.
    public struct TensorInfo: Sendable, Equatable {
        public var name: String
        public var dims: [Int]
        public var type: GGMLType
        /// Byte offset of the tensor's data from the start of the file.
        public var fileOffset: Int
        public var byteCount: Int
        public var elementCount: Int { dims.reduce(1, *) }
    }

    public let path: String
    public let version: UInt32
    /// Metadata in file order of keys.
    public let metadata: [String: GGUFValue]
    /// Tensor infos in file order.
    public let tensors: [TensorInfo]
    /// `general.alignment`, or 32.
    public let alignment: Int
    private let tensorIndex: [String: Int]
    private let base: UnsafeRawPointer
    private let size: Int

    /// Maps and parses the file at `path`. O(header size).
    public init(path: String) throws(GGUFError) {
        self.path = path
        // Non-blocking, so a FIFO without a writer is refused below instead of hanging the open.
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { throw .cannotOpen(path: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw .cannotOpen(path: path, reason: String(cString: strerror(errno))) }
        guard st.st_mode & S_IFMT == S_IFREG else { throw .cannotOpen(path: path, reason: "not a regular file") }
        let size = Int(st.st_size)
        guard size > 0 else { throw .truncated(what: "header", offset: 0, needed: 24) }
        guard let mapped = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), mapped != MAP_FAILED else {
            throw .cannotOpen(path: path, reason: "mmap: " + String(cString: strerror(errno)))
        }
        let base = UnsafeRawPointer(mapped)
        do {
            let parsed = try Self.parse(UnsafeRawBufferPointer(start: base, count: size))
            self.version = parsed.version
            self.metadata = parsed.metadata
            self.tensors = parsed.tensors
            self.alignment = parsed.alignment
        } catch {
            munmap(mapped, size)
            throw error
        }
        self.base = base
        self.size = size
        var index: [String: Int] = [:]
        for (i, t) in tensors.enumerated() { index[t.name] = i }
        self.tensorIndex = index
    }

    deinit { munmap(UnsafeMutableRawPointer(mutating: base), size) }

    /// The tensor info named `name`, if present.
    public func tensor(named name: String) -> TensorInfo? {
        tensorIndex[name].map { tensors[$0] }
    }

    /// Lends the mapped bytes of `tensor` to `body`. The pointer must not escape the closure.
    public func withBytes<R, E: Error>(of tensor: TensorInfo,
                                       _ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try body(UnsafeRawBufferPointer(start: base + tensor.fileOffset, count: tensor.byteCount))
    }

    /// Total size of the mapped file in bytes.
    public var fileSize: Int { size }

    // MARK: Parsing

    private struct Parsed {
        var version: UInt32
        var metadata: [String: GGUFValue]
        var tensors: [TensorInfo]
        var alignment: Int
    }

    /// Upper bounds that keep a corrupt count from asking for absurd allocations.
    private static let maxCount = 1 << 24
    private static let maxDims = 4

    private static func parse(_ bytes: UnsafeRawBufferPointer) throws(GGUFError) -> Parsed {
        var r = GGUFCursor(bytes: bytes)
        let magic = try r.u32("magic")
        guard magic == 0x4655_4747 else { throw .badMagic(found: magic) }   // "GGUF" little-endian
        let version = try r.u32("version")
        guard version == 3 else { throw .unsupportedVersion(version) }
        let tensorCount = try r.count("tensor count", limit: maxCount)
        let kvCount = try r.count("metadata count", limit: maxCount)

        var metadata: [String: GGUFValue] = [:]
        metadata.reserveCapacity(kvCount)
        for _ in 0 ..< kvCount {
            let key = try r.string("metadata key")
            let type = try r.u32("value type of \(key)")
            let value = try r.value(type: type, key: key, depth: 0)
            guard metadata.updateValue(value, forKey: key) == nil else {
                throw .malformed("metadata key \(key) appears twice")
            }
        }

        var alignment = 32
        if let a = metadata["general.alignment"] {
            guard let v = a.intValue, v > 0, v & (v - 1) == 0 else {
                throw .malformed("general.alignment must be a power of two")
            }
            alignment = v
        }

        struct RawInfo { var name: String; var dims: [Int]; var type: GGMLType; var offset: Int }
        var raw: [RawInfo] = []
        raw.reserveCapacity(tensorCount)
        for _ in 0 ..< tensorCount {
            let name = try r.string("tensor name")
            let nDims = try r.u32("dimension count of \(name)")
            guard nDims >= 1, nDims <= UInt32(maxDims) else {
                throw .malformed("tensor \(name) has \(nDims) dimensions (1...\(maxDims) allowed)")
            }
            var dims: [Int] = []
            for d in 0 ..< Int(nDims) {
                let v = try r.u64("dimension \(d) of \(name)")
                guard v >= 1, v <= UInt64(1 << 40) else { throw .malformed("tensor \(name) dimension \(d) is \(v)") }
                dims.append(Int(v))
            }
            let typeRaw = try r.u32("type of \(name)")
            guard let type = GGMLType(rawValue: typeRaw), type.supportedBlockLayout != nil else {
                throw .unsupportedTensorType(tensor: name, type: GGMLType.name(of: typeRaw))
            }
            let offset = try r.u64("data offset of \(name)")
            guard offset <= UInt64(Int.max / 2) else { throw .malformed("tensor \(name) offset \(offset) out of range") }
            raw.append(RawInfo(name: name, dims: dims, type: type, offset: Int(offset)))
        }

        let dataStart = (r.offset + alignment - 1) / alignment * alignment
        var tensors: [TensorInfo] = []
        tensors.reserveCapacity(raw.count)
        var names = Set<String>()
        for info in raw {
            guard names.insert(info.name).inserted else { throw .malformed("tensor \(info.name) appears twice") }
            let layout = info.type.supportedBlockLayout!
            var elements = 1
            for d in info.dims {
                let (m, o) = elements.multipliedReportingOverflow(by: d)
                guard !o, m <= 1 << 40 else { throw .malformed("tensor \(info.name) is too large") }
                elements = m
            }
            guard info.dims[0] % layout.elements == 0 else {
                throw .malformed("tensor \(info.name) row of \(info.dims[0]) is not a multiple of the \(info.type.name) block of \(layout.elements)")
            }
            guard info.offset % alignment == 0 else {
                throw .malformed("tensor \(info.name) offset \(info.offset) is not aligned to \(alignment)")
            }
            let byteCount = elements / layout.elements * layout.bytes
            let start = dataStart + info.offset
            guard start + byteCount <= bytes.count else {
                throw .truncated(what: "data of tensor \(info.name)", offset: min(start, bytes.count),
                                 needed: start + byteCount - bytes.count)
            }
            tensors.append(TensorInfo(name: info.name, dims: info.dims, type: info.type,
                                      fileOffset: start, byteCount: byteCount))
        }
        // No two tensors may share bytes.
        let sorted = tensors.sorted { $0.fileOffset < $1.fileOffset }
        for i in sorted.indices.dropFirst() where sorted[i - 1].fileOffset + sorted[i - 1].byteCount > sorted[i].fileOffset {
            throw .malformed("tensors \(sorted[i - 1].name) and \(sorted[i].name) overlap")
        }
        return Parsed(version: version, metadata: metadata, tensors: tensors, alignment: alignment)
    }
}

/// A bounds-checked little-endian reader over the mapped header. Every read says what it was reading,
/// so a truncation error names the structure that was cut.
struct GGUFCursor {
    let bytes: UnsafeRawBufferPointer
    var offset = 0

    mutating func take(_ n: Int, _ what: @autoclosure () -> String) throws(GGUFError) -> Int {
        guard n >= 0, bytes.count - offset >= n else {
            throw .truncated(what: what(), offset: offset, needed: n - (bytes.count - offset))
        }
        defer { offset += n }
        return offset
    }

    mutating func u8(_ what: @autoclosure () -> String) throws(GGUFError) -> UInt8 {
        bytes[try take(1, what())]
    }
    mutating func u16(_ what: @autoclosure () -> String) throws(GGUFError) -> UInt16 {
        UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: try take(2, what()), as: UInt16.self))
    }
    mutating func u32(_ what: @autoclosure () -> String) throws(GGUFError) -> UInt32 {
        UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: try take(4, what()), as: UInt32.self))
    }
    mutating func u64(_ what: @autoclosure () -> String) throws(GGUFError) -> UInt64 {
        UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: try take(8, what()), as: UInt64.self))
    }

    /// A u64 count that must not exceed `limit` (a corrupt count must not become a huge allocation).
    mutating func count(_ what: String, limit: Int) throws(GGUFError) -> Int {
        let v = try u64(what)
        guard v <= UInt64(limit) else { throw .malformed("\(what) \(v) exceeds \(limit)") }
        return Int(v)
    }

    mutating func string(_ what: @autoclosure () -> String) throws(GGUFError) -> String {
        let label = what()
        let n = try u64("length of \(label)")
        guard n <= UInt64(bytes.count) else {
            throw .truncated(what: label, offset: offset, needed: Int(clamping: n) - (bytes.count - offset))
        }
        let start = try take(Int(n), label)
        return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start ..< start + Int(n)]), as: UTF8.self)
    }

    mutating func value(type: UInt32, key: String, depth: Int) throws(GGUFError) -> GGUFValue {
        switch type {
        case 0: return .unsigned(UInt64(try u8(key)))
        case 1: return .signed(Int64(Int8(bitPattern: try u8(key))))
        case 2: return .unsigned(UInt64(try u16(key)))
        case 3: return .signed(Int64(Int16(bitPattern: try u16(key))))
        case 4: return .unsigned(UInt64(try u32(key)))
        case 5: return .signed(Int64(Int32(bitPattern: try u32(key))))
        case 6: return .float(Double(Float(bitPattern: try u32(key))))
        case 7:
            let b = try u8(key)
            guard b <= 1 else { throw .malformed("bool value \(b) for \(key)") }
            return .bool(b == 1)
        case 8: return .string(try string(key))
        case 9:
            guard depth == 0 else { throw .malformed("nested array in \(key)") }
            let itemType = try u32("array type of \(key)")
            let n = try count("array length of \(key)", limit: 1 << 24)
            // Every item takes at least one byte: a count beyond the remaining bytes is a truncation.
            guard n <= bytes.count - offset else {
                throw .truncated(what: "array \(key)", offset: offset, needed: n - (bytes.count - offset))
            }
            var items: [GGUFValue] = []
            items.reserveCapacity(n)
            for _ in 0 ..< n { items.append(try value(type: itemType, key: key, depth: depth + 1)) }
            return .array(items)
        case 10: return .unsigned(try u64(key))
        case 11: return .signed(Int64(bitPattern: try u64(key)))
        case 12: return .float(Double(bitPattern: try u64(key)))
        default: throw .malformed("metadata \(key) has unknown value type \(type)")
        }
    }
}
