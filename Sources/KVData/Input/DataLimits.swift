/// The limits every reader enforces on what it takes from a file, checked where a value enters and
/// before any arithmetic, conversion or allocation it sizes (the README's "Limits" lists them).
///
/// A value past a limit is a `DataError.badLine` naming the file and line; the per-record limits can
/// be skipped with `skipBadLines`, the whole-file budgets (`RecordBudget`) cannot.
public enum DataLimits {
    /// Most tokens in one request's prompt or output: 2^24 (16,777,216).
    public static let maxTokensPerRequest = 1 << 24
    /// Longest line (or CSV row) a reader holds: 64 MiB. A longer one (or a file without line
    /// breaks, such as a gzip bomb of one byte) is refused once that much has been read.
    public static let maxLineBytes = 1 << 26
    /// Most JSON values (fields and array elements, nested ones included) one line may hold before it
    /// is decoded: 2^21. Counted by one pass over the bytes (`JSONLines.valueCount`), so a line of
    /// millions of small values is refused in milliseconds instead of decoded for a minute. A Mooncake
    /// line may hold `ceil(maxTokensPerRequest / blockTokens)` hash ids plus `maxScalarFields`.
    public static let maxValuesPerLine = 1 << 21
    /// Values a record may hold besides its one long list (the fields of a Mooncake line): 64.
    public static let maxScalarFields = 64
    /// Largest ShareGPT document read as one JSON array: 256 MiB (a larger one must be JSONL).
    public static let maxJSONArrayBytes = 1 << 28
    /// Most lines, blank ones included, one JSON Lines or CSV file may have: 2^25 (33,554,432), four
    /// times `maxRecords`, so a file (or a gzip bomb) of blank lines ends in seconds, not hours.
    public static let maxLines = 1 << 25
    /// Most blank lines before a file's first record when its format is detected: 2^20.
    public static let maxLeadingBlankLines = 1 << 20
    /// Most JSON values (fields and elements) in a ShareGPT document read as one JSON array: 2^23.
    public static let maxJSONArrayValues = 1 << 23
    /// Most records (requests, rows, conversations' turns, prompts) one file yields: 2^23 (8,388,608).
    public static let maxRecords = 1 << 23
    /// Most prefix hash ids over a whole trace: 2^27 (1 GiB of ids).
    public static let maxTotalHashIDs = 1 << 27
    /// Most bytes of prompt text kept from one file: 1 GiB.
    public static let maxTextBytes = 1 << 30
    /// Most sampled output lengths in one CASTILLO row.
    public static let maxSamplesPerRow = 1024
    /// Longest span of arrival times in one trace, in seconds (about 31.7 years). Timestamps must be
    /// finite and non-decreasing in file order; an earlier one than the row before is a bad line.
    public static let maxArrivalSpanSeconds = 1e9
}
