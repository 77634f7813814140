/// Why a length dataset (CASTILLO, ShareGPT) or a compressed file could not be read.
///
/// Every case names the file and, for content errors, the 1-based line (or array element) so that a
/// user can find the bad record.
public enum LengthDataError: Error, Equatable, CustomStringConvertible {
    /// The file or folder could not be opened or read.
    case cannotRead(path: String, reason: String)
    /// The gzip or zlib stream is damaged or truncated.
    case corruptCompressedData(path: String, reason: String)
    /// One record is not what the format requires.
    case malformedLine(file: String, line: Int, reason: String)
    /// A folder lacks a file the format needs (for example CASTILLO's `*lengths*.jsonl[.gz]`).
    case missingFile(folder: String, pattern: String)
    /// The data holds no usable example (after the split, if one was asked for).
    case noExamples(String)

    public var description: String {
        switch self {
        case let .cannotRead(path, reason): "cannot read \(path): \(reason)"
        case let .corruptCompressedData(path, reason): "corrupt compressed data in \(path): \(reason)"
        case let .malformedLine(file, line, reason): "\(file):\(line): \(reason)"
        case let .missingFile(folder, pattern): "no file matching \(pattern) in \(folder)"
        case let .noExamples(what): "no examples: \(what)"
        }
    }
}
