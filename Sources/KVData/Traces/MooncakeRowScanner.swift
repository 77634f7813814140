/// Reads a Mooncake line in the one shape its traces have (`timestamp`, `input_length`,
/// `output_length`, `hash_ids`, each once, numbers in JSON's plain integer or number syntax) in one
/// pass over the bytes, so a line of 2^24 hash ids (`--block-tokens 1`) takes a fraction of a second
/// instead of the general decoder's half a minute.
///
/// Anything else (another key, an escape in a key, a number in another spelling, a missing field)
/// returns nil and the line goes to `JSONDecoder`, which accepts or refuses it as before: the scanner
/// never accepts a line the decoder would refuse. O(line bytes); allocates the ids' array only.
enum MooncakeRowScanner {
    struct Row { var timestamp: Double; var inputLength: Int; var outputLength: Int; var hashIDs: [Int64] }

    /// The row of `line`, or nil (the decoder's turn) for any other shape or more than `maxIDs` ids.
    static func scan(_ line: ArraySlice<UInt8>, maxIDs: Int) -> Row? {
        line.withUnsafeBytes { (b: UnsafeRawBufferPointer) -> Row? in
            var i = 0
            let n = b.count
            func space() { while i < n, b[i] == 0x20 || b[i] == 0x09 || b[i] == 0x0A || b[i] == 0x0D { i += 1 } }
            func expect(_ c: UInt8) -> Bool { space(); guard i < n, b[i] == c else { return false }; i += 1; return true }
            func digits() -> Int { let s = i; while i < n, b[i] >= 0x30, b[i] <= 0x39 { i += 1 }; return i - s }
            /// A JSON integer of at most 18 digits (no fraction or exponent follows).
            func integer() -> Int64? {
                space()
                let negative = i < n && b[i] == 0x2D
                if negative { i += 1 }
                let s = i
                let count = digits()
                guard (1 ... 18).contains(count), count == 1 || b[s] != 0x30 else { return nil }
                if i < n, b[i] == 0x2E || b[i] == 0x65 || b[i] == 0x45 { return nil }
                var v: Int64 = 0
                for k in s ..< i { v = v * 10 + Int64(b[k] - 0x30) }
                return negative ? -v : v
            }
            /// A JSON number (`-?(0|[1-9]d*)(.d+)?([eE][+-]?d+)?`) read as a Double.
            func number() -> Double? {
                space()
                let s = i
                if i < n, b[i] == 0x2D { i += 1 }
                let first = i
                let count = digits()
                guard count >= 1, count == 1 || b[first] != 0x30 else { return nil }
                if i < n, b[i] == 0x2E { i += 1; guard digits() >= 1 else { return nil } }
                if i < n, b[i] == 0x65 || b[i] == 0x45 {
                    i += 1
                    if i < n, b[i] == 0x2B || b[i] == 0x2D { i += 1 }
                    guard digits() >= 1 else { return nil }
                }
                guard i - s <= 64 else { return nil }
                return Double(String(decoding: UnsafeRawBufferPointer(rebasing: b[s ..< i]), as: UTF8.self))
            }
            guard expect(0x7B) else { return nil }
            var timestamp: Double?, input: Int64?, output: Int64?, ids: [Int64]?
            while true {
                guard expect(0x22) else { return nil }
                let s = i
                while i < n, b[i] != 0x22, b[i] != 0x5C { i += 1 }
                guard i < n, b[i] == 0x22 else { return nil }
                let key = UnsafeRawBufferPointer(rebasing: b[s ..< i])
                i += 1
                guard expect(0x3A) else { return nil }
                if key.elementsEqual("timestamp".utf8) {
                    guard timestamp == nil, let v = number() else { return nil }
                    timestamp = v
                } else if key.elementsEqual("input_length".utf8) {
                    guard input == nil, let v = integer() else { return nil }
                    input = v
                } else if key.elementsEqual("output_length".utf8) {
                    guard output == nil, let v = integer() else { return nil }
                    output = v
                } else if key.elementsEqual("hash_ids".utf8) {
                    guard ids == nil, expect(0x5B) else { return nil }
                    var list: [Int64] = []
                    space()
                    if i < n, b[i] == 0x5D { i += 1 } else {
                        while true {
                            guard let v = integer() else { return nil }
                            guard list.count < maxIDs else { return nil }
                            list.append(v)
                            space()
                            guard i < n else { return nil }
                            if b[i] == 0x2C { i += 1; continue }
                            guard b[i] == 0x5D else { return nil }
                            i += 1
                            break
                        }
                    }
                    ids = list
                } else {
                    return nil
                }
                space()
                guard i < n else { return nil }
                if b[i] == 0x2C { i += 1; continue }
                guard b[i] == 0x7D else { return nil }
                i += 1
                break
            }
            space()
            guard i == n, let timestamp, let input, let output, let ids else { return nil }
            return Row(timestamp: timestamp, inputLength: Int(input), outputLength: Int(output), hashIDs: ids)
        }
    }
}
