import KVData

/// `--requests-out FILE.jsonl`: one compact JSON object per replayed request (per run), written at the
/// end through `OutputFile` (a symlink, device or FIFO is refused, before the replay starts).
/// O(1) amortized per record, the whole file held in memory until `write`.
struct RequestsOut {
    let path: String
    private var text = ""

    /// Fails now, not after a long replay, when `path` may not be written.
    init(path: String) throws {
        do { try OutputFile.checkTarget(path) } catch { throw CLIError("--requests-out \(error.description)") }
        self.path = path
    }

    mutating func append(_ record: some Encodable) throws {
        do { text += try ReportEncoder.compact(record) + "\n" } catch { throw CLIError(error.description) }
    }

    func write() throws {
        do { try OutputFile.write(Array(text.utf8), to: path) } catch { throw CLIError(error.description) }
    }
}
