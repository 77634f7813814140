import Foundation
import Glibc

/// Walks JSON Lines records and decodes each one, naming the line of any failure: the one line walker
/// of every JSONL reader (Mooncake, ShareGPT, CASTILLO) and of the CSV reader.
///
/// Lines end at `\n` only (JSON strings may hold U+2028); a trailing `\r` is dropped; blank lines are
/// skipped but counted, so line numbers are the file's own.
public enum JSONLines {
    /// Calls `body` with each non-blank line (without its `\n` or `\r\n`) and its 1-based line number,
    /// reading `source` piece by piece: memory holds one piece plus the longest line. `prefix` holds
    /// bytes already read from `source` (by a reader that looked at its head), walked first, starting
    /// at line `firstLine`. A line longer than `DataLimits.maxLineBytes`, or a file of more than
    /// `DataLimits.maxLines` lines, is a `badLine`.
    ///
    /// - Complexity: O(n) in the (inflated) size.
    public static func forEachLine(
        in source: ByteSource, prefix: [UInt8] = [], firstLine: Int = 1,
        _ body: (ArraySlice<UInt8>, Int) throws(DataError) -> Void
    ) throws(DataError) {
        var buffer = prefix
        buffer.reserveCapacity(2 * ByteSource.pieceBytes)
        var line = firstLine
        var more = true
        // The bytes left over from the last walk hold no line break: the next walk starts past them,
        // so a long line is scanned once, not once per piece.
        var scanned = 0
        while more {
            more = try source.read(appendingTo: &buffer)
            let consumed = try walk(buffer, final: !more, line: &line, scanFrom: scanned, body)
            buffer.removeFirst(consumed)
            scanned = buffer.count
            try checkLineLength(scanned, path: source.path, line: line)
            guard line <= DataLimits.maxLines + 1 else {
                throw .badLine(path: source.path, line: line,
                               reason: "more than \(DataLimits.maxLines) lines (the limit), blank ones included")
            }
        }
    }

    /// Throws when an unfinished line of `bytes` bytes is longer than `DataLimits.maxLineBytes`. O(1).
    public static func checkLineLength(_ bytes: Int, path: String, line: Int) throws(DataError) {
        guard bytes <= DataLimits.maxLineBytes else {
            throw .badLine(path: path, line: line, reason: "line longer than \(DataLimits.maxLineBytes) bytes (the limit)")
        }
    }

    /// Calls `body` with each non-blank line of an in-memory buffer and its 1-based line number.
    ///
    /// - Complexity: O(n) in the buffer size.
    public static func forEachLine<E: Error>(
        in bytes: [UInt8], _ body: (ArraySlice<UInt8>, Int) throws(E) -> Void
    ) throws(E) {
        var line = 1
        _ = try walk(bytes, final: true, line: &line, scanFrom: 0, body)
    }

    /// Walks the complete lines of `bytes` (and the unterminated last one when `final`); returns the
    /// bytes consumed. `bytes[..<scanFrom]` is known to hold no line break.
    private static func walk<E: Error>(
        _ bytes: [UInt8], final: Bool, line: inout Int, scanFrom: Int,
        _ body: (ArraySlice<UInt8>, Int) throws(E) -> Void
    ) throws(E) -> Int {
        var start = 0
        let count = bytes.count
        while start < count {
            var end = start == 0 ? min(scanFrom, count) : start
            end = newline(in: bytes, from: end)
            if end == count && !final { break }
            var last = end
            if last > start && bytes[last - 1] == UInt8(ascii: "\r") { last -= 1 }
            var blank = true
            for i in start..<last where !isSpace(bytes[i]) { blank = false; break }
            if !blank { try body(bytes[start..<last], line) }
            start = end + 1
            line += 1
        }
        return min(start, count)
    }

    /// The index of the first `\n` of `bytes` at or after `start`, or `bytes.endIndex`: one `memchr`,
    /// so a line of tens of MiB is scanned at memory speed in every build. O(bytes scanned).
    public static func newline(in bytes: [UInt8], from start: Int) -> Int {
        bytes.withUnsafeBytes { (raw: UnsafeRawBufferPointer) -> Int in
            guard let base = raw.baseAddress, start < raw.count,
                  let hit = memchr(base + start, 0x0A, raw.count - start) else { return bytes.count }
            return base.distance(to: UnsafeRawPointer(hit))
        }
    }

    /// Decodes one record of type `T`; a failure is a `badLine` naming what is wrong. A line of more
    /// than `maxValues` JSON values (`valueCount`) is refused before it is decoded.
    ///
    /// - Complexity: O(line bytes) to count, then the decoder's own cost, bounded by `maxValues`.
    public static func decode<T: Decodable>(_ type: T.Type, _ line: ArraySlice<UInt8>, path: String,
                                            line number: Int,
                                            maxValues: Int = DataLimits.maxValuesPerLine) throws(DataError) -> T {
        let values = valueCount(line, stoppingAfter: maxValues)
        guard values <= maxValues else {
            throw .badLine(path: path, line: number, reason: "more than \(maxValues) JSON values in one line (the limit)")
        }
        do {
            return try JSONDecoder().decode(T.self, from: Data(line))
        } catch {
            throw .badLine(path: path, line: number, reason: describe(error))
        }
    }

    /// An upper bound on the JSON values of `line` (one plus its commas outside strings, plus one per
    /// opened container), counted until it passes `limit` (then `limit + 1` is returned).
    ///
    /// - Complexity: O(bytes) up to the point the limit is passed; allocates nothing.
    public static func valueCount(_ line: ArraySlice<UInt8>, stoppingAfter limit: Int) -> Int {
        var count = 1
        var inString = false
        var escaped = false
        for b in line {
            if inString {
                if escaped { escaped = false } else if b == UInt8(ascii: "\\") { escaped = true } else if b == UInt8(ascii: "\"") { inString = false }
                continue
            }
            switch b {
            case UInt8(ascii: "\""): inString = true
            case UInt8(ascii: ","), UInt8(ascii: "["), UInt8(ascii: "{"):
                count += 1
                if count > limit { return limit + 1 }
            default: break
            }
        }
        return count
    }

    /// What a decoding failure means for the record, in a few words.
    public static func describe(_ error: any Error) -> String {
        switch error as? DecodingError {
        case let .keyNotFound(key, _): "missing field \"\(key.stringValue)\""
        case let .typeMismatch(_, context): "wrong type at \(path(context))"
        case let .valueNotFound(_, context): "null at \(path(context))"
        // Foundation reports a number too large for its field as invalid JSON, with no field named.
        default: "not a JSON object, or a number out of range"
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
