/// One `kvcache ... --json` report: `{"schema_version": 1, "command": "...", <header fields>, "runs": [...]}`.
///
/// The shape is the same for every subcommand and whatever the number of policies, capacities or
/// sizes: the figures that hold for the whole call (trace, model, options) are top-level keys, and
/// every measured or replayed configuration is one object of `runs` (a command with one result has
/// one run). `docs/REPORT_SCHEMA.md` and `docs/report.schema.json` document the keys per command.
/// Encoded by `ReportEncoder` only; encoding allocates O(size of the report).
public struct Report<Header: Encodable, Run: Encodable>: Encodable {
    /// The envelope's version: bumped when a key changes meaning or disappears (not when one is added).
    public static var schemaVersion: Int { 1 }
    /// The subcommand, as typed: `replay`, `bench core`, `predict eval`...
    public var command: String
    /// The call-wide fields (an object: a typed struct, or `JSONValue.object`).
    public var header: Header
    public var runs: [Run]

    public init(command: String, header: Header, runs: [Run]) {
        self.command = command
        self.header = header
        self.runs = runs
    }

    public func encode(to encoder: any Encoder) throws {
        try header.encode(to: encoder)
        var container = encoder.container(keyedBy: ReportKey.self)
        try container.encode(Self.schemaVersion, forKey: ReportKey("schema_version"))
        try container.encode(command, forKey: ReportKey("command"))
        try container.encode(runs, forKey: ReportKey("runs"))
    }

    /// The report as indented JSON text with a final newline (what `--json` prints).
    public func json() throws(DataError) -> String { try ReportEncoder.pretty(self) + "\n" }
}

extension Report where Header == JSONValue {
    /// A report whose header is an object of `fields`.
    public init(command: String, fields: [(String, JSONValue)], runs: [Run]) {
        self.init(command: command, header: .object(fields), runs: runs)
    }
}

/// A header with no field.
public struct NoReportHeader: Encodable, Sendable {
    public init() {}
    public func encode(to encoder: any Encoder) throws { _ = encoder.container(keyedBy: ReportKey.self) }
}
