/// One GGUF metadata value. Integers of every width are widened to 64 bits; arrays keep their items.
public enum GGUFValue: Sendable, Equatable {
    case unsigned(UInt64)
    case signed(Int64)
    case float(Double)
    case bool(Bool)
    case string(String)
    case array([GGUFValue])

    /// The value as a non-negative `Int`, if it is an integer that fits.
    public var intValue: Int? {
        switch self {
        case let .unsigned(u): u <= UInt64(Int.max) ? Int(u) : nil
        case let .signed(s): s >= 0 ? Int(s) : nil
        default: nil
        }
    }

    /// The value as a `Double`, if it is numeric.
    public var doubleValue: Double? {
        switch self {
        case let .float(f): f
        case let .unsigned(u): Double(u)
        case let .signed(s): Double(s)
        default: nil
        }
    }

    public var stringValue: String? { if case let .string(s) = self { s } else { nil } }
    public var arrayValue: [GGUFValue]? { if case let .array(a) = self { a } else { nil } }
}
