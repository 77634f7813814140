import Foundation
import Testing

/// `kvcache report`: the page from a sequential, a tiered and a timed replay holds every chart, is
/// self-contained (no script, nothing fetched), and a real browser (headless Chromium) renders it with
/// every chart drawn and no console message. Without Chromium the browser test is skipped with a message;
/// under `CI=true` it runs and fails (tools/install-deps.sh installs Debian's chromium).
@Suite("kvcache report (HTML)")
struct HTMLReportTests {
    static let chartIDs = ["chart-hit-rate", "chart-tier-hits", "chart-ttft-cdf", "chart-tpot-cdf", "chart-occupancy"]

    /// The browser: chromium (Debian) or chromium-browser on PATH.
    static let chromium: String? = {
        for folder in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin").split(separator: ":") {
            for name in ["chromium", "chromium-browser"] where FileManager.default.isExecutableFile(atPath: "\(folder)/\(name)") {
                return "\(folder)/\(name)"
            }
        }
        return nil
    }()
    static var browserAvailable: Bool { chromium != nil || ProcessInfo.processInfo.environment["CI"] != nil }

    /// Writes the three reports and the page into `dir`; returns the page's path.
    static func writePage(in dir: String) throws -> String {
        let mooncake = try CLIJSONTests.fixture("mooncake_40.jsonl")
        for (name, arguments) in [
            ("sequential", ["replay", "--range", "0.8:1", "--policy", "lru,fifo", "--capacity-blocks", "300,1000,3000"]),
            ("tiered", ["replay", "--range", "0.8:1", "--capacity-blocks", "300", "--cpu-blocks", "600", "--disk-blocks", "900"]),
            ("timed", ["replay", "--mode", "timed", "--trace", mooncake, "--kv-gib", "0.5,1", "--compare", "on-demand"]),
        ] {
            let r = try CLIJSONTests.run(arguments + ["--output", "\(dir)/\(name).json"])
            #expect(r.status == 0, "\(name): \(r.err)")
        }
        let page = dir + "/report.html"
        let r = try CLIJSONTests.run(["report", "\(dir)/sequential.json", "\(dir)/tiered.json", "\(dir)/timed.json", "-o", page])
        #expect(r.status == 0, "\(r.err)")
        return page
    }

    @Test func thePageHoldsEveryChartAndNothingExternal() throws {
        let dir = try ReportSchemaTests.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let html = try String(contentsOfFile: try Self.writePage(in: dir), encoding: .utf8)
        for id in Self.chartIDs { #expect(html.contains("<svg id=\"\(id)\""), "\(id) missing") }
        #expect(!html.contains("<script") && !html.contains("src=") && !html.contains("href=") && !html.contains("@import"))
        #expect(html.replacingOccurrences(of: "http://www.w3.org/2000/svg", with: "").range(of: "://") == nil)
        // A file that is not a report is refused with one line naming it.
        let bad = dir + "/bad.json"
        try Data("{\"x\": 1}".utf8).write(to: URL(fileURLWithPath: bad))
        let refused = try CLIJSONTests.run(["report", bad, "-o", dir + "/r.html"])
        #expect(refused.status != 0 && refused.err.contains("\(bad): not a kvcache report"))
    }

    /// Runs the browser on `arguments` (with a fresh profile), killed after a minute; returns its stdout
    /// and stderr.
    static func browse(_ arguments: [String], profile: String) throws -> (status: Int32, out: String, err: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try #require(chromium, "chromium is not installed (apt-get install -y chromium)"))
        process.arguments = ["--headless", "--no-sandbox", "--disable-gpu", "--user-data-dir=\(profile)",
                             "--enable-logging=stderr", "--v=0"] + arguments
        // stderr to a file: the browser logs much, and stdout is drained meanwhile.
        let errFile = profile + ".stderr"
        FileManager.default.createFile(atPath: errFile, contents: nil)
        let err = try FileHandle(forWritingTo: URL(fileURLWithPath: errFile))
        let out = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let killer = DispatchWorkItem { if process.isRunning { process.terminate() } }
        DispatchQueue.global().asyncAfter(deadline: .now() + 60, execute: killer)
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        killer.cancel()
        try err.close()
        let errText = try Data(contentsOf: URL(fileURLWithPath: errFile))
        return (process.terminationStatus, String(decoding: outData, as: UTF8.self), String(decoding: errText, as: UTF8.self))
    }

    @Test(.enabled(if: browserAvailable, "chromium is not installed (apt-get install -y chromium); the page is not checked in a browser"))
    func aBrowserRendersEveryChartWithoutConsoleMessages() throws {
        let dir = try ReportSchemaTests.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let page = try Self.writePage(in: dir)
        let url = URL(fileURLWithPath: page).absoluteString
        let dom = try Self.browse(["--dump-dom", url], profile: dir + "/profile")
        #expect(dom.status == 0, "\(dom.err)")
        // The DOM the browser built: every chart's svg with its drawing (lines or bars) inside.
        for id in Self.chartIDs {
            let start = try #require(dom.out.range(of: "<svg id=\"\(id)\""), "\(id) not in the rendered DOM")
            let end = try #require(dom.out.range(of: "</svg>", range: start.upperBound..<dom.out.endIndex))
            let chart = dom.out[start.lowerBound..<end.upperBound]
            #expect(chart.contains("class=\"series\"") || chart.contains("class=\"bar\""), "\(id) has nothing drawn")
        }
        // Chromium logs every console message (errors included) as INFO:CONSOLE on stderr.
        let console = dom.err.split(separator: "\n").filter { $0.contains(":CONSOLE") }
        #expect(console.isEmpty, "console: \(console)")
        // And it paints the page: a PNG screenshot.
        let shot = dir + "/report.png"
        let painted = try Self.browse(["--hide-scrollbars", "--window-size=1000,2600", "--screenshot=\(shot)", url],
                                      profile: dir + "/profile")
        #expect(painted.status == 0, "\(painted.err)")
        let png = try Data(contentsOf: URL(fileURLWithPath: shot))
        #expect(png.count > 10_000 && png.prefix(4) == Data([0x89, 0x50, 0x4E, 0x47]))
    }
}
