/// A failure of the input (unreadable or malformed file): ArgumentParser prints "Error: <reason>" and
/// exits non-zero, without the usage text that argument mistakes get.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
