import CZlib
import Foundation

/// Reads whole files that may be gzip- or zlib-compressed, decoding them with the system zlib.
///
/// Foundation on Linux has no gzip decoder, so this calls `inflate` directly. Concatenated gzip
/// members (as `cat a.gz b.gz` produces) are decoded one after another.
public enum CompressedFile {
    /// The bytes of the file at `path`, decompressed when they start with the gzip magic `1f 8b`.
    ///
    /// - Complexity: O(n) in the decompressed size; the result is held in memory.
    public static func readAll(path: String) throws(LengthDataError) -> [UInt8] {
        let raw: Data
        do {
            raw = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw .cannotRead(path: path, reason: "\(error.localizedDescription)")
        }
        let bytes = [UInt8](raw)
        if bytes.count >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b {
            return try inflate(bytes, name: path)
        }
        return bytes
    }

    /// Decompresses a gzip (or zlib) byte stream; `name` only labels errors.
    ///
    /// - Complexity: O(n) in the decompressed size.
    public static func inflate(_ input: [UInt8], name: String = "<memory>") throws(LengthDataError) -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity(input.count * 4)
        let chunk = 1 << 16
        var buffer = [UInt8](repeating: 0, count: chunk)
        var stream = z_stream()
        // 15 window bits + 32: detect a gzip or zlib header automatically.
        var status = inflateInit2_(&stream, 15 + 32, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
        guard status == Z_OK else { throw .corruptCompressedData(path: name, reason: "inflateInit2 failed (\(status))") }
        defer { inflateEnd(&stream) }
        var failure: String? = nil
        input.withUnsafeBufferPointer { inBuf in
            guard let inBase = inBuf.baseAddress else { return }
            var consumed = 0
            while consumed < inBuf.count {
                // zlib never writes through next_in; the cast only satisfies its C signature.
                stream.next_in = UnsafeMutablePointer(mutating: inBase + consumed)
                let available = min(inBuf.count - consumed, Int(UInt32.max))
                stream.avail_in = uInt(available)
                repeat {
                    let produced: Int = buffer.withUnsafeMutableBufferPointer { outBuf in
                        stream.next_out = outBuf.baseAddress
                        stream.avail_out = uInt(chunk)
                        status = CZlib.inflate(&stream, Z_NO_FLUSH)
                        return chunk - Int(stream.avail_out)
                    }
                    output.append(contentsOf: buffer[0..<produced])
                    if status != Z_OK && status != Z_STREAM_END && status != Z_BUF_ERROR {
                        failure = stream.msg.map { String(cString: $0) } ?? "inflate error \(status)"
                        return
                    }
                    if status == Z_BUF_ERROR && stream.avail_in == 0 { break }
                } while stream.avail_out == 0 && status != Z_STREAM_END
                consumed += available - Int(stream.avail_in)
                if status == Z_STREAM_END {
                    // Another gzip member may follow; skip trailing zero padding.
                    while consumed < inBuf.count && inBuf[consumed] == 0 { consumed += 1 }
                    if consumed < inBuf.count {
                        status = inflateReset(&stream)
                        if status != Z_OK { failure = "inflateReset failed (\(status))"; return }
                    }
                } else if stream.avail_in == 0 && consumed >= inBuf.count {
                    break
                } else if status == Z_BUF_ERROR {
                    failure = "no progress"
                    return
                }
            }
        }
        if let failure { throw .corruptCompressedData(path: name, reason: failure) }
        if status != Z_STREAM_END { throw .corruptCompressedData(path: name, reason: "truncated stream") }
        return output
    }
}
