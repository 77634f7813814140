import Foundation

/// The one JSON writer of the `kvcache` reports and of `JSONValue`: one `JSONEncoder` configuration.
///
/// Keys are sorted (a fixed order, whatever the encoder's dictionary order) and snake_case: a typed
/// report's camelCase property names are converted (`hitTokensL1` -> `hit_tokens_l1`); keys that are
/// data (`JSONValue` object keys, `ReportKey`) are written as given. Integers print as integers, doubles
/// in their shortest round-trip form (an integral double may print without a fraction: readers treat
/// JSON numbers alike), a non-finite double as `null` when it goes through `JSONValue` or `Report.number`.
/// Slashes are not escaped. O(size of the value) per call, one encoder per call.
public enum ReportEncoder {
    /// `value` as indented JSON text (two spaces per level), without a final newline.
    public static func pretty(_ value: some Encodable) throws(DataError) -> String {
        try encode(value, pretty: true)
    }

    /// `value` as compact JSON text, on one line (a JSON Lines record).
    public static func compact(_ value: some Encodable) throws(DataError) -> String {
        try encode(value, pretty: false)
    }

    private static func encode(_ value: some Encodable, pretty: Bool) throws(DataError) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = pretty ? [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
                                          : [.sortedKeys, .withoutEscapingSlashes]
        encoder.keyEncodingStrategy = .custom { path in
            let key = path.last!
            return key is ReportKey ? key : ReportKey(snakeCase(key.stringValue))
        }
        do { return String(decoding: try encoder.encode(value), as: UTF8.self) } catch {
            throw .cannotWrite(path: "JSON report", reason: "\(error)")
        }
    }

    /// `camelCase` -> `camel_case`: an underscore before an upper-case letter that follows a lower-case
    /// letter or a digit (`ttftP50S` -> `ttft_p50_s`), an acronym stays one word (`stoppedAtEOS` ->
    /// `stopped_at_eos`, `HTTPServer` -> `http_server`). Keys already in snake_case are unchanged.
    /// O(key length).
    static func snakeCase(_ key: String) -> String {
        let chars = Array(key)
        var out = ""
        out.reserveCapacity(chars.count + 4)
        for (i, c) in chars.enumerated() {
            if c.isUppercase && i > 0 {
                let before = chars[i - 1]
                let startsWord = before.isLowercase || before.isNumber
                    || (before.isUppercase && i + 1 < chars.count && chars[i + 1].isLowercase)
                if startsWord { out.append("_") }
            }
            out.append(contentsOf: c.lowercased())
        }
        return out
    }
}

/// A JSON object key written exactly as given (no snake_case conversion): data keys and the report's
/// own envelope keys.
public struct ReportKey: CodingKey, Sendable {
    public let stringValue: String
    public var intValue: Int? { nil }
    public init(_ name: String) { stringValue = name }
    public init(stringValue: String) { self.stringValue = stringValue }
    public init?(intValue: Int) { nil }
}
