import ArgumentParser
import Foundation
import KVData

/// `--json`, `--csv` and `--output FILE`: how a subcommand writes its report (`Report`, one shape for
/// every subcommand). Without any of them the subcommand prints its human table. `--output` writes
/// through `OutputFile` (a symlink, device or FIFO is refused) and implies `--json` unless `--csv`.
struct ReportOptions: ParsableArguments {
    @Flag(help: "Print the report as one JSON object on stdout ({\"schema_version\", \"command\", ..., \"runs\": [...]}).")
    var json = false

    @Flag(help: "Print the report as CSV on stdout: one row per run.")
    var csv = false

    @Option(help: "Write the report (JSON, or CSV with --csv) to FILE instead of stdout.")
    var output: String?

    /// Whether a report (not the human table) is asked for.
    var machine: Bool { json || csv || output != nil }

    func validate() throws {
        if json && csv { throw ValidationError("--json and --csv exclude each other") }
        if let output {
            do { try OutputFile.checkTarget(output) } catch { throw ValidationError("--output \(error.description)") }
        }
    }

    /// Writes `report` as asked: JSON or CSV, to stdout or `--output`.
    func emit<Header: Encodable, Run: Encodable>(_ report: Report<Header, Run>) throws {
        do {
            let json = try report.json()
            let text = csv ? try ReportCSV.render(json: json) : json
            if let output { try OutputFile.write(Array(text.utf8), to: output) }
            else { FileHandle.standardOutput.write(Data(text.utf8)) }
        } catch { throw CLIError(error.description) }
    }

    /// Writes a report built as one `JSONValue` object: its `runsKey` array (default `runs`) becomes the
    /// report's runs and its other fields the header; without that array the whole object is the one run.
    /// A `schema_version` field is dropped (the report writes its own).
    func emit(command: String, object: JSONValue, runsKey: String = "runs") throws {
        guard case let .object(fields) = object else { return try emit(command: command, fields: [], runs: [object]) }
        let kept = fields.filter { $0.0 != "schema_version" }
        if case let .array(runs)? = object[runsKey] {
            try emit(command: command, fields: kept.filter { $0.0 != runsKey }, runs: runs)
        } else {
            try emit(command: command, fields: [], runs: [.object(kept)])
        }
    }

    /// Writes a report built as a dictionary (keys sorted; values String, Bool, Int, Double, nested
    /// dictionaries and arrays of them), as `emit(command:object:)`.
    func emit(command: String, object: [String: Any]) throws {
        try emit(command: command, object: Self.value(object))
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

    /// Writes a report whose header and runs are built as `JSONValue`s.
    func emit(command: String, fields: [(String, JSONValue)], runs: [JSONValue]) throws {
        try emit(Report(command: command, fields: fields, runs: runs))
    }
}
