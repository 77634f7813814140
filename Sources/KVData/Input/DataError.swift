/// Why a trace or a dataset could not be read: the one error of every reader in this module.
///
/// Every case names the file; a bad record also names its 1-based line (or, in a JSON array, its
/// 1-based element), and prints as `FILE:LINE: reason` so that a user can jump to it.
public enum DataError: Error, Equatable, CustomStringConvertible {
    /// The file or folder could not be opened or read.
    case cannotRead(path: String, reason: String)
    /// An output file could not be written (or its path names something that is not a regular file).
    case cannotWrite(path: String, reason: String)
    /// The gzip stream is damaged or truncated.
    case corruptCompressedData(path: String, reason: String)
    /// One record is not what the format requires.
    case badLine(path: String, line: Int, reason: String)
    /// A folder lacks a file the format needs (for example CASTILLO's `*lengths*.jsonl[.gz]`).
    case missingFile(folder: String, pattern: String)
    /// The format could not be told from the content.
    case unknownFormat(path: String)
    /// The file holds no usable record.
    case empty(path: String)

    public var description: String {
        switch self {
        case let .cannotRead(path, reason): "\(path): cannot read: \(reason)"
        case let .cannotWrite(path, reason): "\(path): cannot write: \(reason)"
        case let .corruptCompressedData(path, reason): "\(path): corrupt compressed data: \(reason)"
        case let .badLine(path, line, reason): "\(path):\(line): \(reason)"
        case let .missingFile(folder, pattern): "\(folder): no file matching \(pattern)"
        case let .unknownFormat(path): "\(path): unknown trace format (use --format)"
        case let .empty(path): "\(path): no requests"
        }
    }
}
