/// Counts what one file's reader keeps in memory (records, prefix hash ids, text) against the
/// whole-file limits of `DataLimits`, so that a small compressed file cannot make a reader hold
/// more than those limits allow.
///
/// O(1) per record, allocates nothing. `add` throws `DataError.badLine` naming the line that went
/// past a limit, and counts nothing then; this error is never skipped by `skipBadLines`.
public struct RecordBudget: Sendable {
    public let path: String
    public private(set) var records = 0
    public private(set) var hashIDs = 0
    public private(set) var textBytes = 0

    public init(path: String) { self.path = path }

    /// Counts one record of `hashIDs` ids and `textBytes` bytes of kept text (each at most 2^40).
    public mutating func add(line: Int, hashIDs ids: Int = 0, textBytes text: Int = 0) throws(DataError) {
        guard records < DataLimits.maxRecords else {
            throw .badLine(path: path, line: line, reason: "more than \(DataLimits.maxRecords) records (the limit; split the file)")
        }
        guard ids <= DataLimits.maxTotalHashIDs - hashIDs else {
            throw .badLine(path: path, line: line, reason: "more than \(DataLimits.maxTotalHashIDs) prefix hash ids in the file (the limit; split the file)")
        }
        guard text <= DataLimits.maxTextBytes - textBytes else {
            throw .badLine(path: path, line: line, reason: "more than \(DataLimits.maxTextBytes) bytes of prompt text in the file (the limit; split the file)")
        }
        records += 1
        hashIDs += ids
        textBytes += text
    }
}
