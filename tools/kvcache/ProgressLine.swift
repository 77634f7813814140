import Foundation
import Glibc
import KVCache

/// The progress line of a long run on stderr: `replay lru at 8192 blocks (run 2 of 6): 41000/100000
/// requests, 8200 requests/s, ETA 19 s`, redrawn in place (carriage return) at most every 0.2 s and
/// erased when the call ends.
///
/// Shown only when stderr is a terminal (`isatty(2)`), whatever the output format (`--json` keeps it:
/// the report goes to stdout or a file); silent otherwise, so logs and pipes get no control characters.
/// `advance` is O(1) with no allocation except every 64th call, which reads the clock and, once per
/// 0.2 s, formats and writes the line. The ETA counts the items left in every run still to come. A
/// call whose runs cannot count their items (`itemsPerRun` 0: the timed replay's engine) draws
/// `label (run i of n), ETA s` from the mean time of the runs done.
final class ProgressLine {
    private let enabled: Bool
    private let what: String
    private let runs: Int
    private let itemsPerRun: Int
    private var run = 0
    private var label = ""
    private var done = 0
    private var runStart: UInt64 = 0
    private var lastDraw: UInt64 = 0
    private var drawn = false
    private var callStart: UInt64 = 0

    /// Whether the line is drawn at all (stderr is a terminal).
    var isShown: Bool { enabled }

    /// - Parameters:
    ///   - what: the unit counted (`requests`).
    ///   - runs: how many runs of `itemsPerRun` items the call makes.
    ///   - enabled: defaults to whether stderr is a terminal.
    init(what: String, runs: Int, itemsPerRun: Int, enabled: Bool = isatty(2) != 0) {
        self.enabled = enabled
        self.what = what
        self.runs = max(1, runs)
        self.itemsPerRun = itemsPerRun
    }

    /// Starts run number `index` (0-based) named `label`, and draws it at 0 done.
    func begin(_ label: String, index: Int) {
        guard enabled else { return }
        self.label = label
        run = index
        done = 0
        runStart = KVClock.monotonicNanos()
        if index == 0 { callStart = runStart }
        draw(now: runStart)
    }

    /// `count` items of the current run are done.
    @inline(__always)
    func advance(to count: Int) {
        guard enabled, count & 63 == 0 || count == itemsPerRun else { return }
        done = count
        let now = KVClock.monotonicNanos()
        if now &- lastDraw >= 200_000_000 || count == itemsPerRun { draw(now: now) }
    }

    /// Erases the line (the call's own output follows on a clean terminal line).
    func finish() {
        guard enabled, drawn else { return }
        FileHandle.standardError.write(Data("\r\u{1B}[2K".utf8))
        drawn = false
    }

    private func draw(now: UInt64) {
        lastDraw = now
        guard itemsPerRun > 0 else {
            var line = "\r\u{1B}[2K\(label) (run \(run + 1) of \(runs))"
            if run > 0 {
                let perRun = KVClock.seconds(from: callStart, to: now) / Double(run)
                line += String(format: ", ETA %.0f s", perRun * Double(runs - run))
            }
            FileHandle.standardError.write(Data(line.utf8))
            drawn = true
            return
        }
        let seconds = KVClock.seconds(from: runStart, to: now)
        let rate = seconds > 0 ? Double(done) / seconds : 0
        var line = "\r\u{1B}[2K\(label) (run \(run + 1) of \(runs)): \(done)/\(itemsPerRun) \(what)"
        if rate > 0 {
            let left = Double(itemsPerRun - done + (runs - run - 1) * itemsPerRun) / rate
            line += String(format: ", %.0f %@/s, ETA %.0f s", rate, what, left)
        }
        FileHandle.standardError.write(Data(line.utf8))
        drawn = true
    }
}
