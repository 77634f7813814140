import CZlib
import Glibc

/// The bytes of one file (or of a buffer), read in bounded pieces and inflated on the way when they
/// start with the gzip magic `1f 8b`.
///
/// Memory is bounded by two pieces of `pieceBytes` (compressed input and inflated output) whatever the
/// file's size: readers walk the pieces (`JSONLines`, `CSV`) instead of holding the file. Foundation on
/// Linux has no gzip decoder, so this is the one caller of zlib's `inflate`; concatenated gzip members
/// (as `cat a.gz b.gz` produces) are inflated one after another, zero padding between them skipped.
/// Only regular files are opened by path (`RegularFile`); standard input streams through the same
/// pieces, limits and gzip detection when asked for explicitly (`init(standardInput:)`). A source read
/// once can still be detected first: `mark` records what is read, `rewind` serves it again (the
/// recorded head is held in memory: format detection reads one line). Failure: `DataError.cannotRead` (open or read) or
/// `.corruptCompressedData` (damaged or truncated stream), naming the path. A source is used by one thread; `read` allocates only when the caller's
/// buffer grows.
public final class ByteSource {
    /// The most bytes one `read` appends, and the size of the compressed input buffer.
    public static let pieceBytes = 1 << 16

    /// The file's path (or the name given to a buffer); labels errors.
    public let path: String
    private var file: UnsafeMutablePointer<FILE>?
    private var memory: [UInt8]
    private var memoryOffset = 0
    private let input: UnsafeMutablePointer<UInt8>
    /// Inflated bytes of one piece (gzip only), copied out by `read`.
    private let output: UnsafeMutablePointer<UInt8>
    private var inputCount = 0
    private var inputOffset = 0
    private var gzip = false
    private var stream = z_stream()
    private var streamOpen = false
    private var memberEnded = false
    private var exhausted = false
    /// Bytes `rewind` put back, served before anything else.
    private var pending: [UInt8] = []
    /// What was read since `mark`, while marking.
    private var recorded: [UInt8]?

    /// Opens the file at `path`.
    public init(path: String) throws(DataError) {
        self.path = path
        memory = []
        input = .allocate(capacity: Self.pieceBytes)
        output = .allocate(capacity: Self.pieceBytes)
        // Every stored property is set here, so a throw runs `deinit`, which frees the buffers.
        file = try RegularFile.open(path).file
        try start()
    }

    /// Reads standard input (named `-` in errors) once, as it arrives; refused when it is a terminal.
    public init(standardInput: Void) throws(DataError) {
        path = RegularFile.standardInputPath
        memory = []
        input = .allocate(capacity: Self.pieceBytes)
        output = .allocate(capacity: Self.pieceBytes)
        file = try RegularFile.openStandardInput()
        try start()
    }

    /// The file at `path`, or standard input when `path` is `-` (for readers that read their data once).
    public convenience init(pathOrStandardInput path: String) throws(DataError) {
        if path == RegularFile.standardInputPath { try self.init(standardInput: ()) } else { try self.init(path: path) }
    }

    /// Starts recording what `read` returns, for `rewind`.
    public func mark() { recorded = [] }

    /// Serves again, from the next `read` on, everything read since `mark`, and stops recording.
    public func rewind() {
        pending = (recorded ?? []) + pending
        recorded = nil
    }

    /// Reads `bytes` as if they were a file called `name` (tests, embedded data).
    public init(bytes: [UInt8], name: String = "<memory>") throws(DataError) {
        path = name
        memory = bytes
        input = .allocate(capacity: Self.pieceBytes)
        output = .allocate(capacity: Self.pieceBytes)
        try start()
    }

    deinit {
        if let file { fclose(file) }
        if streamOpen { inflateEnd(&stream) }
        input.deallocate()
        output.deallocate()
    }

    /// Appends the next piece (at most `pieceBytes`) to `buffer`. Returns false at the end of the data.
    ///
    /// - Complexity: O(piece).
    public func read(appendingTo buffer: inout [UInt8]) throws(DataError) -> Bool {
        if !pending.isEmpty {
            buffer += pending
            recorded? += pending
            pending = []
            return true
        }
        guard recorded != nil else { return try readPiece(appendingTo: &buffer) }
        let start = buffer.count
        let more = try readPiece(appendingTo: &buffer)
        recorded! += buffer[start...]
        return more
    }

    private func readPiece(appendingTo buffer: inout [UInt8]) throws(DataError) -> Bool {
        if !gzip {
            if inputOffset == inputCount { try refill() }
            guard inputOffset < inputCount else { return false }
            buffer.append(contentsOf: UnsafeBufferPointer(start: input + inputOffset, count: inputCount - inputOffset))
            inputOffset = inputCount
            return true
        }
        while true {
            if memberEnded {
                // Another gzip member may follow; skip trailing zero padding first.
                while true {
                    while inputOffset < inputCount && input[inputOffset] == 0 { inputOffset += 1 }
                    if inputOffset < inputCount { break }
                    try refill()
                    if inputCount == 0 { return false }
                }
                guard inflateReset(&stream) == Z_OK else { throw corrupt("inflateReset failed") }
                memberEnded = false
            }
            if inputOffset == inputCount {
                try refill()
                if inputCount == 0 { throw corrupt("truncated stream") }
            }
            stream.next_in = input + inputOffset
            stream.avail_in = uInt(inputCount - inputOffset)
            stream.next_out = output
            stream.avail_out = uInt(Self.pieceBytes)
            let status = CZlib.inflate(&stream, Z_NO_FLUSH)
            let produced = Self.pieceBytes - Int(stream.avail_out)
            // One copy of the inflated piece (a memcpy, also in debug builds).
            buffer.append(contentsOf: UnsafeBufferPointer(start: output, count: produced))
            inputOffset = inputCount - Int(stream.avail_in)
            switch status {
            case Z_STREAM_END: memberEnded = true
            case Z_OK, Z_BUF_ERROR: break
            default: throw corrupt(stream.msg.map { String(cString: $0) } ?? "inflate error \(status)")
            }
            if produced > 0 { return true }
        }
    }

    /// Every remaining byte. O(n) in the (inflated) size; the result is held in memory.
    public func readAll() throws(DataError) -> [UInt8] {
        var all: [UInt8] = []
        while try read(appendingTo: &all) {}
        return all
    }

    /// Every byte of the file at `path`, inflated when it is gzip.
    public static func readAll(path: String) throws(DataError) -> [UInt8] {
        try ByteSource(path: path).readAll()
    }

    /// Reads the first piece and decides whether the data is gzip.
    private func start() throws(DataError) {
        try refill()
        guard inputCount >= 2, input[0] == 0x1f, input[1] == 0x8b else { return }
        gzip = true
        // 15 window bits + 32: detect a gzip or zlib header automatically.
        let status = inflateInit2_(&stream, 15 + 32, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
        guard status == Z_OK else { throw corrupt("inflateInit2 failed (\(status))") }
        streamOpen = true
    }

    /// Replaces the input buffer's content with the next piece of the file; `inputCount` 0 at the end.
    private func refill() throws(DataError) {
        inputOffset = 0
        inputCount = 0
        guard !exhausted else { return }
        if let file {
            inputCount = fread(input, 1, Self.pieceBytes, file)
            if inputCount < Self.pieceBytes {
                if ferror(file) != 0 { throw .cannotRead(path: path, reason: String(cString: strerror(errno))) }
                exhausted = true
            }
        } else {
            inputCount = min(Self.pieceBytes, memory.count - memoryOffset)
            memory.withUnsafeBufferPointer { m in
                if inputCount > 0 { input.update(from: m.baseAddress! + memoryOffset, count: inputCount) }
            }
            memoryOffset += inputCount
            if memoryOffset == memory.count { exhausted = true }
        }
    }

    private func corrupt(_ reason: String) -> DataError { .corruptCompressedData(path: path, reason: reason) }
}
