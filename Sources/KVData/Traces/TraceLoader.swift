/// Reads a trace file in any supported format, chosen by `--format` or detected from its content.
public enum TraceLoader {
    /// Loads `path` (gzip or not). O(file size); memory holds the requests and one piece of the file.
    /// - Parameters:
    ///   - format: the format; nil detects it from the first non-empty line.
    ///   - skipBadLines: count and skip malformed rows instead of failing on the first.
    ///   - hashBlockTokens: tokens per Mooncake hash id (512 in the published traces).
    /// - Throws: `DataError` naming the file (and line for a bad row).
    public static func load(path: String, format: TraceFormat? = nil, skipBadLines: Bool = false,
                            hashBlockTokens: Int = 512) throws(DataError) -> LoadedTrace {
        var resolved = format
        if resolved == nil { resolved = try detect(ByteSource(path: path)) }
        guard let resolved else { throw .unknownFormat(path: path) }
        return try read(ByteSource(path: path), format: resolved, skipBadLines: skipBadLines,
                        hashBlockTokens: hashBlockTokens)
    }

    /// Reads an in-memory trace (`path` labels errors), as `load` reads a file.
    public static func parse(_ bytes: [UInt8], path: String, format: TraceFormat? = nil,
                             skipBadLines: Bool = false, hashBlockTokens: Int = 512) throws(DataError) -> LoadedTrace {
        var resolved = format
        if resolved == nil { resolved = try detect(ByteSource(bytes: bytes, name: path)) }
        guard let resolved else { throw .unknownFormat(path: path) }
        return try read(ByteSource(bytes: bytes, name: path), format: resolved, skipBadLines: skipBadLines,
                        hashBlockTokens: hashBlockTokens)
    }

    /// Reads `source` as `format`.
    public static func read(_ source: ByteSource, format: TraceFormat, skipBadLines: Bool = false,
                            hashBlockTokens: Int = 512) throws(DataError) -> LoadedTrace {
        switch format {
        case .azure, .vidur, .burstgpt: try CSVTrace.read(source, format: format, skipBadLines: skipBadLines)
        case .sharegpt: try ShareGPT.trace(source, skipBadLines: skipBadLines)
        case .castillo: try Castillo.trace(source, skipBadLines: skipBadLines)
        case .mooncake: try Mooncake.read(source, blockTokens: hashBlockTokens, skipBadLines: skipBadLines)
        case .ragpulse: try RAGPulse.read(source, skipBadLines: skipBadLines).trace
        }
    }

    /// The format of `source` judged by its first non-blank line, or nil. Reads up to that line.
    public static func detect(_ source: ByteSource) throws(DataError) -> TraceFormat? {
        var found: TraceFormat?? = nil
        var head: [UInt8] = []
        var more = true
        while found == nil && more {
            more = try source.read(appendingTo: &head)
            // Only a complete line decides (or the last one, at the end of the data).
            JSONLines.forEachLine(in: head) { (bytes, _) in
                guard found == nil else { return }
                if bytes.endIndex < head.endIndex || !more {
                    found = .some(TraceFormat.detect(firstLine: String(decoding: bytes, as: UTF8.self)[...]))
                }
            }
        }
        return found ?? nil
    }
}
