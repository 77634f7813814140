import ArgumentParser
import Foundation
import KVData

/// `kvcache report RESULTS.json... -o report.html`: one self-contained HTML page (inline SVG, no script,
/// nothing fetched) charting the reports of earlier `--json` runs (`HTMLReportPage`).
struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Chart --json reports in one self-contained HTML page (inline SVG, no script).",
        discussion: """
            Charts: token hit rate against capacity per policy and hit tokens by tier (sequential replays), \
            TTFT and TPOT CDFs per run (timed replays), tier occupancy over the replay (tiered sequential \
            replays). Runs without a chart's figures are skipped; a chart without data says so.
            """)

    @Argument(help: "Reports written by `kvcache ... --json` or `--output` (gzip accepted).")
    var results: [String]

    @Option(name: [.short, .customLong("output")], help: "Where to write the HTML page.")
    var output: String = "report.html"

    func validate() throws {
        guard !results.isEmpty else { throw ValidationError("give at least one report file") }
        do { try OutputFile.checkTarget(output) } catch { throw ValidationError("--output \(error.description)") }
    }

    func run() throws {
        var inputs: [HTMLReportPage.Input] = []
        for path in results {
            let bytes: [UInt8]
            do { bytes = try ByteSource.readAll(path: path) } catch { throw CLIError(error.description) }
            guard bytes.count <= DataLimits.maxJSONArrayBytes else {
                throw CLIError("\(path): larger than \(DataLimits.maxJSONArrayBytes) bytes")
            }
            guard let object = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any],
                  object["runs"] is [Any] else {
                throw CLIError("\(path): not a kvcache report (a JSON object with a runs array)")
            }
            inputs.append(.init(path: path, object: object))
        }
        let page = HTMLReportPage(inputs: inputs).html()
        do { try OutputFile.write(Array(page.utf8), to: output) } catch { throw CLIError(error.description) }
        note("wrote \(output) (\(inputs.count) reports, \(inputs.reduce(0) { $0 + (($1.object["runs"] as? [Any])?.count ?? 0) }) runs)")
    }
}
