import Foundation
import KVData

/// Writes the one JSON object of a `--json` run to stdout: `JSONValue.pretty`, keys in the order given.
enum JSONReport {
    static func print(_ value: JSONValue) {
        FileHandle.standardOutput.write(Data((value.pretty + "\n").utf8))
    }

    /// Prints a dictionary built by a command that has no typed report yet; keys sorted, so the order is
    /// stable. Values: String, Bool, Int, Double, nested dictionaries and arrays of them.
    static func print(_ object: [String: Any]) throws {
        print(value(object))
    }

    private static func value(_ any: Any) -> JSONValue {
        switch any {
        case let b as Bool: .bool(b)
        case let i as Int: .int(i)
        case let d as Double: .double(d)
        case let s as String: .string(s)
        case let o as [String: Any]: .object(o.keys.sorted().map { ($0, value(o[$0]!)) })
        case let a as [Any]: .array(a.map(value))
        default: .string("\(any)")
        }
    }
}

/// Human output and progress go to stderr, so stdout stays machine-readable.
func note(_ message: String) {
    FileHandle.standardError.write(Data((message + "\n").utf8))
}
