import Foundation
import Testing

/// The progress line of a long run: drawn on stderr when stderr is a terminal (a pseudo-terminal here),
/// with `--json` on stdout untouched; absent when stderr is a pipe.
@Suite("kvcache progress line")
struct ProgressLineCLITests {
    /// Runs `kvcache arguments` with stderr on a new pseudo-terminal (python3's pty module: Glibc's Swift
    /// module leaves out posix_openpt); returns the exit status, stdout and everything the terminal got.
    static func runOnTerminal(_ arguments: [String]) throws -> (status: Int32, out: Data, terminal: String) {
        let script = """
            import os, pty, subprocess, sys
            master, slave = pty.openpty()
            with open(sys.argv[1], "wb") as out:
                p = subprocess.Popen(sys.argv[2:], stdout=out, stderr=slave)
                os.close(slave)
                seen = b""
                while True:
                    try:
                        chunk = os.read(master, 4096)
                    except OSError:  # EIO: the command ended and closed the terminal
                        break
                    if not chunk:
                        break
                    seen += chunk
                sys.stdout.buffer.write(seen)
                sys.exit(p.wait())
            """
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("kvcache-progress-\(UUID().uuidString).json")
        defer { try? FileManager.default.removeItem(at: file) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", script, file.path, CLIJSONTests.executable.path] + arguments
        let terminal = Pipe()
        process.standardOutput = terminal
        try process.run()
        let seen = terminal.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, try Data(contentsOf: file), String(decoding: seen, as: UTF8.self))
    }

    @Test func aTerminalGetsTheProgressLineAndJSONStaysClean() throws {
        let arguments = ["replay", "--policy", "lru,fifo", "--capacity-blocks", "300", "--json"]
        let r = try Self.runOnTerminal(arguments)
        #expect(r.status == 0)
        #expect(r.terminal.contains("(run 1 of 2)") && r.terminal.contains("(run 2 of 2)"), "\(r.terminal)")
        #expect(r.terminal.contains("requests/s, ETA"), "\(r.terminal)")
        let report = try #require(try JSONSerialization.jsonObject(with: r.out) as? [String: Any])
        #expect((report["runs"] as? [[String: Any]])?.count == 2)
        // Not a terminal: no progress line, no control characters.
        let piped = try CLIJSONTests.run(arguments)
        #expect(piped.status == 0 && !piped.err.contains("run 1 of") && !piped.err.contains("\u{1B}"))
    }

    @Test func aTimedReplayShowsItsRunsAndTheirETA() throws {
        let r = try Self.runOnTerminal(["replay", "--mode", "timed", "--trace", try CLIJSONTests.fixture("mooncake_40.jsonl"),
                                        "--kv-gib", "0.5,1", "--compare", "on-demand", "--json"])
        #expect(r.status == 0)
        #expect(r.terminal.contains("(run 1 of 2)") && r.terminal.contains("(run 2 of 2), ETA"), "\(r.terminal)")
        #expect((try JSONSerialization.jsonObject(with: r.out) as? [String: Any])?["runs"] is [Any])
    }
}
