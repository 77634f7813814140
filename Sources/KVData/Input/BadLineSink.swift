/// Collects malformed records: throws the first one, or counts it when skipping is allowed.
///
/// O(1) per report; keeps only the first skipped record's description.
struct BadLineSink {
    let path: String
    let skip: Bool
    var skipped = 0
    var first: String?

    init(path: String, skip: Bool) {
        self.path = path
        self.skip = skip
    }

    mutating func report(line: Int, _ reason: String) throws(DataError) {
        try report(.badLine(path: path, line: line, reason: reason))
    }

    mutating func report(_ error: DataError) throws(DataError) {
        guard skip else { throw error }
        skipped += 1
        if first == nil { first = error.description }
    }
}
