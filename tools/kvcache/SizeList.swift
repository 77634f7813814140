/// A comma-separated list of sizes given to one option (`--tree-host-blocks 0,1024`).
enum SizeList {
    /// The sizes in `text`, each in `range`; a `CLIError` naming `option` otherwise.
    static func parse(_ text: String, option: String, range: ClosedRange<Int>) throws -> [Int] {
        try text.split(separator: ",", omittingEmptySubsequences: false).map { item in
            guard let n = Int(item), range.contains(n) else {
                throw CLIError("\(option) must be in \(range.lowerBound)...\(range.upperBound) (or a comma-separated list), got '\(item)'")
            }
            return n
        }
    }
}
