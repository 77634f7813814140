import KVData
import KVEvents

/// Rebuilds a Mooncake-format trace from a recorded KV-event stream (`EventRecording`), so that traffic
/// seen only through its events can be replayed.
///
/// A recording with request frames (version 2, `kvcache replay --record-events`) is exported exactly:
/// one request per `RecordedRequest`, with its `input_length` and `output_length`, `hash_ids` numbering
/// its block hashes densely in order of first appearance (equal id = same block = same prefix), and
/// `timestamp` its time in milliseconds after the first request's. Replaying the export with the same
/// block size, policy and capacity gives every request the same hit tokens (every request is there,
/// those served entirely from the cache included, so the eviction order is the same). The event
/// batches are then a cross-check: the chosen medium's blocks are rebuilt from them, and each request's
/// recorded hit must be the longest prefix of its blocks held when it arrived (`hitMismatches` counts
/// those that are not).
///
/// A recording without request frames (a live stream: vLLM's, or ours through `kvcache events record`)
/// is exported from its events alone, which is all it has: each `BlockStored` of the chosen medium (default
/// `GPU`; events without a medium count as device events) is one request whose prompt is the stored
/// blocks' chain, the ancestors of `parent_block_hash` (from the earlier stored events) followed by the
/// stored blocks; a stored event whose parent is the previous stored event's last block in the same
/// batch extends that request; `input_length` = blocks x `block_size`, `output_length` 0. A request
/// served entirely from the cache stores nothing and publishes no event, so it is not in that export,
/// and the lengths are whole blocks: each exported request replays to its own hits only as long as the
/// missing full hits did not change the eviction order (always without eviction). `exact` is false then.
///
/// The recording is read in pieces, one frame held at a time (`read(path:medium:)`). Every number
/// taken from it is range-checked where it enters, against the trace readers' own limits (`DataLimits`:
/// lengths and block sizes at most `maxTokensPerRequest`, at most `maxRecords` requests, arrival span
/// at most `maxArrivalSpanSeconds`), so that the export is a trace `kvcache replay` reads; at most
/// `maxHashIDs` hash ids are written and `maxDistinctBlocks` distinct block hashes kept, which bounds
/// memory and time; an error names the file, the frame and its byte offset.
///
/// O(events x chain depth + request blocks); the parent of every hash ever stored is kept.
struct EventTraceExport {
    /// The most distinct block hashes an export keeps (exported, parents and held): 2^24, about 2 GB.
    static let maxDistinctBlocks = 1 << 24
    /// The most hash ids one export writes: 2^24, an eighth of what a trace may hold
    /// (`DataLimits.maxTotalHashIDs`), because a version 1 recording's requests repeat their ancestors:
    /// a chain of n one-block batches (a 100-byte frame each) exports n^2/2 ids, and 2^27 of them took
    /// minutes to write from a 1.6 MB file.
    static let maxHashIDs = 1 << 24

    struct Request: Encodable {
        var timestamp: Double
        var inputLength: Int
        var outputLength = 0
        var hashIds: [Int]
    }

    /// What the stream held.
    struct Figures {
        var batches = 0
        var storedEvents = 0
        var removedEvents = 0
        var requests = 0
        var inputTokens = 0
        var blockTokens: Int?
        var firstTimestamp: Double?
        var lastTimestamp: Double?
        /// Request frames read (0: the export comes from the stored events).
        var requestFrames = 0
        /// The recorded hit tokens of the request frames.
        var hitTokens = 0
        /// Request frames whose recorded hit is not the prefix the events say was held.
        var hitMismatches = 0
        /// Whether the export is every request the cache served (the recording had request frames).
        var exact: Bool { requestFrames > 0 }
    }

    let medium: String
    private(set) var requests: [Request] = []
    private(set) var figures = Figures()
    private var parent: [[UInt8]: [UInt8]] = [:]
    private var ids: [[UInt8]: Int] = [:]
    /// Hash ids in `requests`, all together.
    private var totalHashIDs = 0
    /// Requests come from request frames (and not from stored events).
    private let fromRequests: Bool
    /// With `fromRequests`: the medium's blocks the batches so far leave held.
    private var held: Set<[UInt8]> = []
    private var firstRequestTime: Double?
    private var lastRequestTime: Double?

    init(medium: String = "GPU", fromRequests: Bool = false) {
        self.medium = medium
        self.fromRequests = fromRequests
    }

    /// Reads one request frame (a recording with request frames: one exported request each).
    mutating func add(_ request: RecordedRequest) throws {
        figures.requestFrames += 1
        let index = figures.requestFrames
        if let b = figures.blockTokens, b != request.blockTokens {
            throw CLIError("request \(index): block_size \(request.blockTokens) after \(b) (one block size per trace)")
        }
        let limit = DataLimits.maxTokensPerRequest
        for (name, value) in [("input_tokens", request.inputTokens), ("output_tokens", request.outputTokens),
                              ("block_size", request.blockTokens)] where value > limit {
            throw CLIError("request \(index): \(name) \(value) is over the limit of \(limit) tokens")
        }
        let blocks = (request.inputTokens + request.blockTokens - 1) / request.blockTokens
        guard request.blockHashes.count <= blocks else {
            throw CLIError("request \(index): \(request.blockHashes.count) block_hashes for input_tokens \(request.inputTokens) at block_size \(request.blockTokens) (at most \(blocks))")
        }
        try checkRoom(requests: 1, hashIDs: request.blockHashes.count, at: "request \(index)")
        figures.blockTokens = request.blockTokens
        let first = firstRequestTime ?? request.timestamp
        firstRequestTime = first
        guard request.timestamp >= (lastRequestTime ?? first) else {
            throw CLIError("request \(index): its time \(request.timestamp) is before the previous request's")
        }
        guard request.timestamp - first <= DataLimits.maxArrivalSpanSeconds else {
            throw CLIError("request \(index): its time \(request.timestamp) is more than \(DataLimits.maxArrivalSpanSeconds) s after the first request's")
        }
        lastRequestTime = request.timestamp
        let k = request.blockHashes.prefix { held.contains($0) }.count
        if min(k * request.blockTokens, request.inputTokens) != request.hitTokens { figures.hitMismatches += 1 }
        figures.hitTokens += request.hitTokens
        figures.requests += 1
        figures.inputTokens += request.inputTokens
        requests.append(Request(timestamp: (request.timestamp - first) * 1000, inputLength: request.inputTokens,
                                outputLength: request.outputTokens, hashIds: try ids(of: request.blockHashes)))
    }

    /// Refuses what would take the export past `DataLimits.maxRecords` requests or
    /// `maxHashIDs` hash ids.
    private func checkRoom(requests more: Int, hashIDs: Int, at name: String) throws {
        guard requests.count + more <= DataLimits.maxRecords else {
            throw CLIError("\(name): more than \(DataLimits.maxRecords) requests")
        }
        guard totalHashIDs + hashIDs <= Self.maxHashIDs else {
            throw CLIError("\(name): more than \(Self.maxHashIDs) hash ids in the export (export a shorter recording)")
        }
    }

    /// Refuses more than `maxDistinctBlocks` distinct hashes in `count` (a table the export keeps).
    private static func checkDistinct(_ count: Int, at name: String) throws {
        guard count <= maxDistinctBlocks else {
            throw CLIError("\(name): more than \(maxDistinctBlocks) distinct block hashes")
        }
    }

    /// Reads one batch's events.
    mutating func add(_ batch: VLLMEventDecoder.Batch) throws {
        figures.batches += 1
        let first = figures.firstTimestamp ?? batch.timestamp
        figures.firstTimestamp = first
        guard batch.timestamp >= (figures.lastTimestamp ?? batch.timestamp) else {
            throw CLIError("batch \(figures.batches): its time \(batch.timestamp) is before the previous batch's")
        }
        guard batch.timestamp - first <= DataLimits.maxArrivalSpanSeconds else {
            throw CLIError("batch \(figures.batches): its time \(batch.timestamp) is more than \(DataLimits.maxArrivalSpanSeconds) s after the first batch's")
        }
        figures.lastTimestamp = batch.timestamp
        if fromRequests { return try track(batch) }
        var last: [UInt8]? = nil
        for event in batch.events {
            switch event {
            case let .stored(hashes, parentHash, blockSize, _, eventMedium):
                guard eventMedium == nil || eventMedium == medium, !hashes.isEmpty else { continue }
                figures.storedEvents += 1
                guard blockSize <= DataLimits.maxTokensPerRequest else {
                    throw CLIError("batch \(figures.batches): block_size \(blockSize) is over the limit of \(DataLimits.maxTokensPerRequest) tokens")
                }
                if let b = figures.blockTokens, b != blockSize {
                    throw CLIError("batch \(figures.batches): block_size \(blockSize) after \(b) (one block size per trace)")
                }
                figures.blockTokens = blockSize
                var previous = parentHash
                for h in hashes {
                    if let previous { parent[h] = previous }
                    previous = h
                }
                try Self.checkDistinct(parent.count, at: "batch \(figures.batches)")
                // A request's blocks: at most maxTokensPerRequest tokens (so no product below overflows).
                let maxBlocks = DataLimits.maxTokensPerRequest / blockSize
                func tooLong(_ blocks: Int) -> CLIError {
                    CLIError("batch \(figures.batches): a stored chain of \(blocks) or more blocks of \(blockSize) tokens, over the limit of \(DataLimits.maxTokensPerRequest) tokens a request (or a loop)")
                }
                if let p = parentHash, p == last, !requests.isEmpty {
                    let now = requests[requests.count - 1].hashIds.count
                    guard hashes.count <= maxBlocks - now else { throw tooLong(now + hashes.count) }
                    try checkRoom(requests: 0, hashIDs: hashes.count, at: "batch \(figures.batches)")
                    let more = try ids(of: hashes)
                    requests[requests.count - 1].hashIds += more
                    requests[requests.count - 1].inputLength += hashes.count * blockSize
                    figures.inputTokens += hashes.count * blockSize
                } else {
                    guard hashes.count <= maxBlocks else { throw tooLong(hashes.count) }
                    var chain: [[UInt8]] = []
                    var cursor = parentHash
                    while let c = cursor {
                        chain.append(c)
                        guard chain.count + hashes.count <= maxBlocks else { throw tooLong(chain.count + hashes.count) }
                        cursor = parent[c]
                    }
                    let blocks = chain.reversed() + hashes
                    try checkRoom(requests: 1, hashIDs: blocks.count, at: "batch \(figures.batches)")
                    let hashIds = try ids(of: blocks)
                    requests.append(Request(timestamp: (batch.timestamp - first) * 1000, inputLength: blocks.count * blockSize,
                                            hashIds: hashIds))
                    figures.requests += 1
                    figures.inputTokens += blocks.count * blockSize
                }
                last = hashes.last
            case let .removed(_, eventMedium):
                if eventMedium == nil || eventMedium == medium { figures.removedEvents += 1 }
            case .allCleared, .other:
                continue
            }
        }
    }

    /// Counts `batch`'s events of the medium and applies them to `held`.
    private mutating func track(_ batch: VLLMEventDecoder.Batch) throws {
        for event in batch.events {
            switch event {
            case let .stored(hashes, _, _, _, eventMedium):
                guard eventMedium == nil || eventMedium == medium else { continue }
                figures.storedEvents += 1
                held.formUnion(hashes)
                try Self.checkDistinct(held.count, at: "batch \(figures.batches)")
            case let .removed(hashes, eventMedium):
                guard eventMedium == nil || eventMedium == medium else { continue }
                figures.removedEvents += 1
                held.subtract(hashes)
            case .allCleared:
                if medium == EventMedium().device { held.removeAll() }
            case .other:
                continue
            }
        }
    }

    /// The requests as Mooncake JSONL.
    func jsonLines() throws(DataError) -> String {
        var text = ""
        for r in requests {
            text += try ReportEncoder.compact(r)
            text += "\n"
        }
        return text
    }

    /// The export of the recording at `path` (either version, gzip inflated), read in pieces: one
    /// frame is held at a time. Whether it has request frames is found first, by a scan of the frame
    /// headers that stops at the first request frame. Errors are one line naming the file, the frame
    /// and its byte offset.
    static func read(path: String, medium: String) throws -> EventTraceExport {
        var fromRequests = false
        let version = try forEachFrame(path) { frame in
            fromRequests = frame.kind == .request
            return !fromRequests
        }
        var export = EventTraceExport(medium: medium, fromRequests: version == 2 && fromRequests)
        _ = try forEachFrame(path) { frame in
            switch frame.kind {
            case .eventBatch: try export.add(try VLLMEventDecoder.decode(frame.payload))
            case .request: try export.add(try RecordedRequest.decode(frame.payload))
            }
            return true
        }
        return export
    }

    /// Calls `body` with each frame of the recording at `path` in order until it returns false; returns
    /// the recording's version. The file is read through `ByteSource` in pieces and the buffer holds at
    /// most one frame and one piece. Errors name the path, and `body`'s the frame and its offset. O(file).
    private static func forEachFrame(_ path: String, _ body: (EventRecording.Frame) throws -> Bool) throws -> Int {
        var buffer: [UInt8] = []
        var start = 0
        var ended = false
        do {
            let source = try ByteSource(path: path)
            // Reads pieces until `need` unconsumed bytes are held or the file ends.
            func fill(_ need: Int) throws(DataError) {
                while !ended && buffer.count - start < need {
                    if start > 0 {
                        buffer.removeSubrange(0..<start)
                        start = 0
                    }
                    ended = try !source.read(appendingTo: &buffer)
                }
            }
            try fill(EventRecording.magic.count)
            var parser: EventRecording.FrameParser
            do {
                parser = .init(version: try EventRecording.version(magic: buffer.prefix(EventRecording.magic.count)))
            } catch { throw CLIError("\(path): \(error)") }
            start = EventRecording.magic.count
            while true {
                let name = "frame \(parser.frames + 1) (byte \(parser.offset))"
                let next: (frame: EventRecording.Frame, consumed: Int)?
                do { next = try parser.next(buffer[start...], atEnd: ended) } catch { throw CLIError("\(path): \(error)") }
                if let next {
                    do {
                        guard try body(next.frame) else { return parser.version }
                    } catch let error as EventRecordingError {
                        throw CLIError("\(path): \(name): \(error)")
                    } catch let error as CLIError {
                        throw CLIError("\(path): \(name): \(error)")
                    }
                    start += next.consumed
                } else if ended {
                    return parser.version
                } else {
                    try fill(buffer.count - start + 1)
                }
            }
        } catch let error as DataError {
            throw CLIError(error.description)
        }
    }

    /// The dense ids of `hashes`, new ones numbered in order (at most `maxDistinctBlocks`).
    private mutating func ids(of hashes: [[UInt8]]) throws -> [Int] {
        totalHashIDs += hashes.count
        var out: [Int] = []
        out.reserveCapacity(hashes.count)
        for hash in hashes {
            if let known = ids[hash] { out.append(known); continue }
            let next = ids.count
            guard next < Self.maxDistinctBlocks else { throw CLIError("more than \(Self.maxDistinctBlocks) distinct block hashes") }
            ids[hash] = next
            out.append(next)
        }
        return out
    }
}
