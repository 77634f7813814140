/// A figure of a typed report that may be missing: written as a JSON number, or `null` when it is nil
/// or not finite (JSON has no NaN or infinity; `JSONEncoder` would refuse them, and a plain optional
/// would drop the key instead of writing `null`).
public struct ReportNumber: Encodable, Sendable, Equatable {
    public var value: Double?

    public init(_ value: Double?) { self.value = value }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        if let value, value.isFinite { try container.encode(value) } else { try container.encodeNil() }
    }
}
