/// Why a configuration could not be loaded. Each case names what was wrong in words a user can act
/// on: the key as the YAML file spells it, the `KVCACHE_*` variable that sets it, and the value given.
/// Loading is all or nothing: a configuration that throws was not built.
public enum KVConfigError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A value out of range, of the wrong type, or contradicting another key.
    case invalidValue(key: String, variable: String, message: String)
    /// A key that has no default was not given.
    case missing(key: String, variable: String)
    /// The YAML file could not be read or parsed.
    case file(path: String, message: String)
    /// The YAML file holds a key that is not a configuration key (a typo would otherwise be ignored).
    case unknownKey(key: String, path: String)

    public var description: String {
        switch self {
        case let .invalidValue(key, variable, message): "configuration key \(key) (\(variable)): \(message)"
        case let .missing(key, variable): "configuration key \(key) (\(variable)) is required and was not given"
        case let .file(path, message): "configuration file \(Self.excerpt(path, limit: 200)): \(message)"
        case let .unknownKey(key, path):
            "configuration file \(Self.excerpt(path, limit: 200)): unknown key \(Self.excerpt(key)) (the keys are in docs/CONFIGURATION.md)"
        }
    }

    /// `text` as an error message quotes it: on one line (control characters escaped, as `\n`) and at
    /// most `limit` characters (then "..."), so a hostile value or parser message cannot flood or split
    /// the caller's log line. O(limit).
    public static func excerpt(_ text: String, limit: Int = 80) -> String {
        var out = ""
        for c in text.unicodeScalars {
            if out.unicodeScalars.count >= limit {
                out += "..."
                break
            }
            switch c {
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default: out += c.properties.generalCategory == .control ? "\\u{\(String(c.value, radix: 16))}" : String(c)
            }
        }
        return out
    }

    /// The key the error is about ("" for a file error).
    public var key: String {
        switch self {
        case let .invalidValue(key, _, _), let .missing(key, _), let .unknownKey(key, _): key
        case .file: ""
        }
    }
}
