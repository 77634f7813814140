/// A decoded msgpack value: the subset vLLM's `KVEventBatch` uses (nil, bool, integers, floats, str,
/// bin, array, map; ext is refused).
///
/// `decode` reads one value from untrusted bytes: every length is checked against what is left before
/// anything is allocated, nesting deeper than `maxDepth` and more than `maxValues` values are refused
/// (each value is a boxed enum: a 64 MiB frame of one-byte items would otherwise take gigabytes), and a failure is a
/// `EventRecordingError.malformed` that names the offset. O(bytes); the value owns copies of its strings
/// and binaries.
public indirect enum MsgpackValue: Equatable, Sendable {
    case null
    case bool(Bool)
    case int(Int64)
    case uint(UInt64)
    case double(Double)
    case string(String)
    case binary([UInt8])
    case array([MsgpackValue])
    case map([(MsgpackValue, MsgpackValue)])

    /// The deepest nesting `decode` accepts (a batch nests 4 deep).
    public static let maxDepth = 32
    /// The most values (nested ones included) `decode` accepts in one payload: 2^23, a batch storing
    /// millions of blocks with their token ids.
    public static let maxValues = 1 << 23

    public static func == (a: MsgpackValue, b: MsgpackValue) -> Bool {
        switch (a, b) {
        case (.null, .null): true
        case let (.bool(x), .bool(y)): x == y
        case let (.int(x), .int(y)): x == y
        case let (.uint(x), .uint(y)): x == y
        case let (.double(x), .double(y)): x == y
        case let (.string(x), .string(y)): x == y
        case let (.binary(x), .binary(y)): x == y
        case let (.array(x), .array(y)): x == y
        case let (.map(x), .map(y)): x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: false
        }
    }

    /// The value of `key` when this is a map with a string key `key`. O(keys).
    public subscript(key: String) -> MsgpackValue? {
        guard case let .map(pairs) = self else { return nil }
        return pairs.first { $0.0 == .string(key) }?.1
    }

    /// The value as an integer when it is one that fits `Int`.
    public var integer: Int? {
        switch self {
        case let .int(i): Int(exactly: i)
        case let .uint(u): Int(exactly: u)
        default: nil
        }
    }

    /// Decodes the one value that fills `bytes` exactly.
    public static func decode(_ bytes: ArraySlice<UInt8>) throws(EventRecordingError) -> MsgpackValue {
        var reader = Reader(bytes: bytes, offset: bytes.startIndex)
        let value = try reader.value(depth: 0)
        guard reader.offset == bytes.endIndex else {
            throw .malformed("\(bytes.endIndex - reader.offset) bytes after the msgpack value")
        }
        return value
    }

    private struct Reader {
        let bytes: ArraySlice<UInt8>
        var offset: Int
        var values = 0

        mutating func take(_ n: Int) throws(EventRecordingError) -> ArraySlice<UInt8> {
            guard n >= 0, bytes.endIndex - offset >= n else {
                throw .malformed("msgpack value truncated at byte \(offset - bytes.startIndex)")
            }
            defer { offset += n }
            return bytes[offset..<offset + n]
        }

        mutating func unsigned(_ n: Int) throws(EventRecordingError) -> UInt64 {
            try take(n).reduce(0) { $0 << 8 | UInt64($1) }
        }

        mutating func value(depth: Int) throws(EventRecordingError) -> MsgpackValue {
            guard depth < MsgpackValue.maxDepth else { throw .malformed("msgpack nested deeper than \(MsgpackValue.maxDepth)") }
            let at = offset - bytes.startIndex
            values += 1
            guard values <= MsgpackValue.maxValues else { throw .malformed("msgpack holds more than \(MsgpackValue.maxValues) values (at byte \(at))") }
            let b = try take(1).first!
            switch b {
            case 0x00...0x7f: return .int(Int64(b))
            case 0x80...0x8f: return try map(Int(b & 0x0f), depth)
            case 0x90...0x9f: return try array(Int(b & 0x0f), depth)
            case 0xa0...0xbf: return try string(Int(b & 0x1f))
            case 0xc0: return .null
            case 0xc2: return .bool(false)
            case 0xc3: return .bool(true)
            case 0xc4, 0xc5, 0xc6: return .binary(Array(try take(Int(try unsigned(1 << Int(b - 0xc4))))))
            case 0xca: return .double(Double(Float(bitPattern: UInt32(try unsigned(4)))))
            case 0xcb: return .double(Double(bitPattern: try unsigned(8)))
            case 0xcc, 0xcd, 0xce, 0xcf: return .uint(try unsigned(1 << Int(b - 0xcc)))
            case 0xd0: return .int(Int64(Int8(bitPattern: UInt8(try unsigned(1)))))
            case 0xd1: return .int(Int64(Int16(bitPattern: UInt16(try unsigned(2)))))
            case 0xd2: return .int(Int64(Int32(bitPattern: UInt32(try unsigned(4)))))
            case 0xd3: return .int(Int64(bitPattern: try unsigned(8)))
            case 0xd9, 0xda, 0xdb: return try string(Int(try unsigned(1 << Int(b - 0xd9))))
            case 0xdc, 0xdd: return try array(Int(try unsigned(b == 0xdc ? 2 : 4)), depth)
            case 0xde, 0xdf: return try map(Int(try unsigned(b == 0xde ? 2 : 4)), depth)
            case 0xe0...0xff: return .int(Int64(Int8(bitPattern: b)))
            default: throw .malformed("msgpack type 0x\(String(b, radix: 16)) at byte \(at) is not supported")
            }
        }

        mutating func string(_ n: Int) throws(EventRecordingError) -> MsgpackValue {
            .string(String(decoding: try take(n), as: UTF8.self))
        }

        mutating func array(_ n: Int, _ depth: Int) throws(EventRecordingError) -> MsgpackValue {
            // Each element takes at least one byte: a count beyond what is left is refused before allocating.
            guard n <= bytes.endIndex - offset else { throw .malformed("msgpack array of \(n) items in \(bytes.endIndex - offset) bytes") }
            guard n <= MsgpackValue.maxValues - values else { throw .malformed("msgpack array of \(n) items, over the \(MsgpackValue.maxValues) values limit") }
            var items: [MsgpackValue] = []
            items.reserveCapacity(n)
            for _ in 0..<n { items.append(try value(depth: depth + 1)) }
            return .array(items)
        }

        mutating func map(_ n: Int, _ depth: Int) throws(EventRecordingError) -> MsgpackValue {
            guard n <= (bytes.endIndex - offset) / 2 else { throw .malformed("msgpack map of \(n) pairs in \(bytes.endIndex - offset) bytes") }
            guard n <= (MsgpackValue.maxValues - values) / 2 else { throw .malformed("msgpack map of \(n) pairs, over the \(MsgpackValue.maxValues) values limit") }
            var pairs: [(MsgpackValue, MsgpackValue)] = []
            pairs.reserveCapacity(n)
            for _ in 0..<n { pairs.append((try value(depth: depth + 1), try value(depth: depth + 1))) }
            return .map(pairs)
        }
    }
}
