/// A JSON value built field by field: the untyped part of a report (a run's figures, data-keyed maps).
///
/// It is `Encodable` and written by `ReportEncoder`, the one JSON writer: object keys are data, written
/// as given (never snake-cased) and sorted; a non-finite double is written as `null`. Doubles print in
/// their shortest round-trip form, so a figure read back is the figure computed. `text` is compact,
/// `pretty` indents by two spaces. O(size of the value) to render.
public indirect enum JSONValue: Sendable, Equatable, Encodable {
    case string(String), int(Int), double(Double), bool(Bool), null
    case array([JSONValue]), object([(String, JSONValue)])

    /// Compact JSON text.
    public var text: String { (try? ReportEncoder.compact(self)) ?? "null" }

    /// Indented JSON text (two spaces per level).
    public var pretty: String { (try? ReportEncoder.pretty(self)) ?? "null" }

    /// The value of `key` when this is an object that has it. O(keys).
    public subscript(key: String) -> JSONValue? {
        guard case let .object(fields) = self else { return nil }
        return fields.first { $0.0 == key }?.1
    }

    public static func == (a: JSONValue, b: JSONValue) -> Bool { a.text == b.text }

    public func encode(to encoder: any Encoder) throws {
        switch self {
        case let .object(fields):
            var container = encoder.container(keyedBy: ReportKey.self)
            for (key, value) in fields { try container.encode(value, forKey: ReportKey(key)) }
        case let .array(items):
            var container = encoder.unkeyedContainer()
            for item in items { try container.encode(item) }
        case let .string(s): var c = encoder.singleValueContainer(); try c.encode(s)
        case let .int(i): var c = encoder.singleValueContainer(); try c.encode(i)
        case let .double(d):
            var c = encoder.singleValueContainer()
            if d.isFinite { try c.encode(d) } else { try c.encodeNil() }
        case let .bool(b): var c = encoder.singleValueContainer(); try c.encode(b)
        case .null: var c = encoder.singleValueContainer(); try c.encodeNil()
        }
    }
}
