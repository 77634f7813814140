/// Reads a trace file in any supported format, chosen by `--format` or detected from its content.
public enum TraceLoader {
    /// Loads `path` (gzip or not). O(file size); memory holds the requests and one piece of the file.
    /// `path` `-` reads standard input once, through the same readers and limits (the format detection's
    /// first line is kept and served again); a RAGPulse trace, whose side files sit beside it, needs a path.
    /// - Parameters:
    ///   - format: the format; nil detects it from the first non-empty line.
    ///   - skipBadLines: count and skip malformed rows instead of failing on the first.
    ///   - hashBlockTokens: tokens per Mooncake hash id (512 in the published traces).
    /// - Throws: `DataError` naming the file (and line for a bad row).
    public static func load(path: String, format: TraceFormat? = nil, skipBadLines: Bool = false,
                            hashBlockTokens: Int = 512) throws(DataError) -> LoadedTrace {
        if path == RegularFile.standardInputPath {
            // Standard input streams once: the detection's head is served again to the reader.
            let source = try ByteSource(standardInput: ())
            var resolved = format
            if resolved == nil {
                source.mark()
                resolved = try detect(source)
                source.rewind()
            }
            guard let resolved else { throw .unknownFormat(path: path) }
            guard resolved != .ragpulse else {
                throw .cannotRead(path: path, reason: "ragpulse traces need their folder's side files; give the trace's path, not standard input")
            }
            return try read(source, format: resolved, skipBadLines: skipBadLines, hashBlockTokens: hashBlockTokens)
        }
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
        case .marconi: try MarconiTrace.loaded(source, skipBadLines: skipBadLines)
        case .ragpulse: try RAGPulse.read(source, skipBadLines: skipBadLines).trace
        }
    }

    /// The format of `source` judged by its first non-blank line, or nil. Reads up to that line,
    /// holding only it (blank lines before it are dropped); a first line longer than
    /// `DataLimits.maxLineBytes`, or more than `DataLimits.maxLeadingBlankLines` blank lines before it,
    /// is a `badLine`. O(bytes read).
    public static func detect(_ source: ByteSource) throws(DataError) -> TraceFormat? {
        var head: [UInt8] = []
        var start = 0, scanned = 0, line = 1
        var more = true
        while true {
            if scanned == head.count {
                guard more else {
                    // The last line, without a line break.
                    guard head[start...].contains(where: { !JSONLines.isSpace($0) }) else { return nil }
                    return TraceFormat.detect(firstLine: head[start...])
                }
                head.removeFirst(start)
                scanned -= start
                start = 0
                more = try source.read(appendingTo: &head)
                try JSONLines.checkLineLength(head.count, path: source.path, line: line)
                continue
            }
            let end = JSONLines.newline(in: head, from: scanned)
            // Only a complete line decides (or the last one, at the end of the data: above).
            if end == head.count {
                // A JSON array (ShareGPT) may be one long line: its first byte decides.
                if head[start..<end].first(where: { !JSONLines.isSpace($0) }) == UInt8(ascii: "[") { return .sharegpt }
                scanned = end
                continue
            }
            if head[start..<end].contains(where: { !JSONLines.isSpace($0) }) {
                return TraceFormat.detect(firstLine: head[start..<end])
            }
            start = min(end + 1, head.count)
            scanned = start
            line += 1
            guard line <= DataLimits.maxLeadingBlankLines else {
                throw .badLine(path: source.path, line: line,
                               reason: "no record in the first \(DataLimits.maxLeadingBlankLines) lines (the limit)")
            }
        }
    }
}
