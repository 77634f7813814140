import Foundation

/// Writes one JSON object to stdout with keys in a stable (sorted) order.
enum JSONReport {
    static func print(_ object: [String: Any]) throws {
        let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .prettyPrinted])
        FileHandle.standardOutput.write(data)
        FileHandle.standardOutput.write(Data("\n".utf8))
    }
}

/// Human output and progress go to stderr, so stdout stays machine-readable.
func note(_ message: String) {
    FileHandle.standardError.write(Data((message + "\n").utf8))
}

/// A failure of the input (unreadable or malformed file): ArgumentParser prints "Error: <reason>" and
/// exits non-zero, without the usage text that argument mistakes get.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
