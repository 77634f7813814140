import Foundation

/// Splits a byte buffer into JSON Lines records and decodes each one, naming the line of any failure.
public enum JSONLines {
    /// Calls `body` with each non-blank line (without its `\n` or `\r\n`) and its 1-based line number.
    ///
    /// - Complexity: O(n) in the buffer size.
    public static func forEachLine<E: Error>(
        in bytes: [UInt8], _ body: (ArraySlice<UInt8>, Int) throws(E) -> Void
    ) throws(E) {
        var start = 0
        var line = 1
        let count = bytes.count
        while start < count {
            var end = start
            while end < count && bytes[end] != UInt8(ascii: "\n") { end += 1 }
            var last = end
            if last > start && bytes[last - 1] == UInt8(ascii: "\r") { last -= 1 }
            var blank = true
            for i in start..<last where !isSpace(bytes[i]) { blank = false; break }
            if !blank { try body(bytes[start..<last], line) }
            start = end + 1
            line += 1
        }
    }

    /// Decodes one record of type `T`, turning decoding failures into `malformedLine` errors.
    public static func decode<T: Decodable>(_ type: T.Type, _ line: ArraySlice<UInt8>, file: String,
                                            lineNumber: Int) throws(LengthDataError) -> T {
        do {
            return try JSONDecoder().decode(T.self, from: Data(line))
        } catch let DecodingError.keyNotFound(key, _) {
            throw .malformedLine(file: file, line: lineNumber, reason: "missing field \"\(key.stringValue)\"")
        } catch let DecodingError.typeMismatch(_, context) {
            throw .malformedLine(file: file, line: lineNumber, reason: "wrong type at \(path(context))")
        } catch let DecodingError.valueNotFound(_, context) {
            throw .malformedLine(file: file, line: lineNumber, reason: "null at \(path(context))")
        } catch {
            throw .malformedLine(file: file, line: lineNumber, reason: "not a JSON object")
        }
    }

    private static func path(_ context: DecodingError.Context) -> String {
        let keys = context.codingPath.map { $0.intValue.map(String.init) ?? $0.stringValue }
        return keys.isEmpty ? "top level" : "\"" + keys.joined(separator: ".") + "\""
    }

    @inline(__always) static func isSpace(_ b: UInt8) -> Bool {
        b == 0x20 || b == 0x09 || b == 0x0a || b == 0x0d
    }
}
