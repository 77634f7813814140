/// A JSON value, and the one JSON writer of the CLI and the libraries' reports.
///
/// Objects keep their keys in the order given (reports list them in a stable, documented order; keys
/// are snake_case). `text` is compact, `pretty` indents by two spaces; both escape strings per RFC 8259
/// and write non-finite doubles as `null`. Doubles print in Swift's shortest round-trip form, so a
/// figure read back is the figure computed. O(size of the value) to render.
public indirect enum JSONValue: Sendable, Equatable {
    case string(String), int(Int), double(Double), bool(Bool), null
    case array([JSONValue]), object([(String, JSONValue)])

    /// Compact JSON text.
    public var text: String {
        var out = ""
        write(to: &out, indent: nil)
        return out
    }

    /// Indented JSON text (two spaces per level), the `--json` output of every `kvcache` command.
    public var pretty: String {
        var out = ""
        write(to: &out, indent: 0)
        return out
    }

    /// The value of `key` when this is an object that has it. O(keys).
    public subscript(key: String) -> JSONValue? {
        guard case let .object(fields) = self else { return nil }
        return fields.first { $0.0 == key }?.1
    }

    public static func == (a: JSONValue, b: JSONValue) -> Bool { a.text == b.text }

    private func write(to out: inout String, indent: Int?) {
        switch self {
        case let .string(s): JSONValue.quote(s, into: &out)
        case let .int(i): out += String(i)
        case let .double(d): out += d.isFinite ? String(d) : "null"
        case let .bool(b): out += b ? "true" : "false"
        case .null: out += "null"
        case let .array(a):
            writeContainer(a, open: "[", close: "]", to: &out, indent: indent) { v, out, inner in
                v.write(to: &out, indent: inner)
            }
        case let .object(o):
            writeContainer(o, open: "{", close: "}", to: &out, indent: indent) { field, out, inner in
                JSONValue.quote(field.0, into: &out)
                out += inner == nil ? ":" : ": "
                field.1.write(to: &out, indent: inner)
            }
        }
    }

    private func writeContainer<T>(_ items: [T], open: Character, close: Character, to out: inout String, indent: Int?,
                                   _ element: (T, inout String, Int?) -> Void) {
        out.append(open)
        guard !items.isEmpty else { out.append(close); return }
        let inner = indent.map { $0 + 2 }
        for (i, item) in items.enumerated() {
            if i > 0 { out += "," }
            if let inner { out += "\n" + String(repeating: " ", count: inner) }
            element(item, &out, inner)
        }
        if let indent { out += "\n" + String(repeating: " ", count: indent) }
        out.append(close)
    }

    private static func quote(_ s: String, into out: inout String) {
        out += "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 {
                    let h = String(u.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - h.count) + h
                } else { out.unicodeScalars.append(u) }
            }
        }
        out += "\""
    }
}
