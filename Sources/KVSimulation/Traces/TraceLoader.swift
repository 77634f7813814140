import Foundation
import KVScheduler

/// Reads a trace file in any supported format, chosen by `--format` or detected from its content.
public enum TraceLoader {
    /// Loads `path`. O(file size).
    /// - Parameters:
    ///   - format: the format; nil detects it from the first non-empty line.
    ///   - skipBadLines: count and skip malformed rows instead of failing on the first.
    /// - Throws: `TraceError` naming the file (and line for a bad row).
    ///   - hashBlockTokens: tokens per Mooncake hash id (512 in the published traces).
    public static func load(path: String, format: TraceFormat? = nil, skipBadLines: Bool = false,
                            hashBlockTokens: Int = 512) throws(TraceError) -> LoadedTrace {
        let text = try readText(path: path)
        return try parse(text, path: path, format: format, skipBadLines: skipBadLines, hashBlockTokens: hashBlockTokens)
    }

    /// Parses the whole text of a trace; `path` labels errors.
    public static func parse(_ text: String, path: String, format: TraceFormat? = nil,
                             skipBadLines: Bool = false, hashBlockTokens: Int = 512) throws(TraceError) -> LoadedTrace {
        guard let resolved = format ?? detect(text) else { throw .unknownFormat(path: path) }
        switch resolved {
        case .azure, .vidur, .burstgpt:
            return try CSVTraceReader.parse(text, format: resolved, path: path, skipBadLines: skipBadLines)
        case .sharegpt:
            return try ShareGPTTraceReader.parse(text, path: path, skipBadLines: skipBadLines)
        case .castillo:
            return try CastilloTraceReader.parse(text, path: path, skipBadLines: skipBadLines)
        case .mooncake:
            return try MooncakeTrace.parse(Data(text.utf8), path: path, blockTokens: hashBlockTokens,
                                           skipBadLines: skipBadLines)
        }
    }

    /// The format of `text` judged by its first non-empty line, or nil.
    public static func detect(_ text: String) -> TraceFormat? {
        for line in text.split(maxSplits: 64, omittingEmptySubsequences: true, whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            if line.allSatisfy({ $0 == " " || $0 == "\t" || $0 == "\r" }) { continue }
            return TraceFormat.detect(firstLine: line)
        }
        return nil
    }

    /// The file's text, gunzipped when it starts with the gzip magic (`.jsonl.gz` traces).
    static func readText(path: String) throws(TraceError) -> String {
        guard FileManager.default.fileExists(atPath: path) else { throw .unreadable(path: path, reason: "no such file") }
        let bytes: [UInt8]
        do { bytes = try CompressedFile.readAll(path: path) } catch {
            switch error {
            case let .cannotRead(_, reason), let .corruptCompressedData(_, reason):
                throw .unreadable(path: path, reason: reason)
            default:
                throw .unreadable(path: path, reason: error.description)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
