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
/// O(events x chain depth + request blocks); the parent of every hash ever stored is kept.
struct EventTraceExport {
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
        figures.blockTokens = request.blockTokens
        let first = firstRequestTime ?? request.timestamp
        firstRequestTime = first
        guard request.timestamp >= (lastRequestTime ?? first) else {
            throw CLIError("request \(index): its time \(request.timestamp) is before the previous request's")
        }
        lastRequestTime = request.timestamp
        let k = request.blockHashes.prefix { held.contains($0) }.count
        if min(k * request.blockTokens, request.inputTokens) != request.hitTokens { figures.hitMismatches += 1 }
        figures.hitTokens += request.hitTokens
        figures.requests += 1
        figures.inputTokens += request.inputTokens
        requests.append(Request(timestamp: (request.timestamp - first) * 1000, inputLength: request.inputTokens,
                                outputLength: request.outputTokens, hashIds: ids(of: request.blockHashes)))
    }

    /// Reads one batch's events.
    mutating func add(_ batch: VLLMEventDecoder.Batch) throws {
        figures.batches += 1
        let first = figures.firstTimestamp ?? batch.timestamp
        figures.firstTimestamp = first
        guard batch.timestamp >= (figures.lastTimestamp ?? batch.timestamp) else {
            throw CLIError("batch \(figures.batches): its time \(batch.timestamp) is before the previous batch's")
        }
        figures.lastTimestamp = batch.timestamp
        if fromRequests { return track(batch) }
        var last: [UInt8]? = nil
        for event in batch.events {
            switch event {
            case let .stored(hashes, parentHash, blockSize, _, eventMedium):
                guard eventMedium == nil || eventMedium == medium, !hashes.isEmpty else { continue }
                figures.storedEvents += 1
                if let b = figures.blockTokens, b != blockSize {
                    throw CLIError("batch \(figures.batches): block_size \(blockSize) after \(b) (one block size per trace)")
                }
                figures.blockTokens = blockSize
                var previous = parentHash
                for h in hashes {
                    if let previous { parent[h] = previous }
                    previous = h
                }
                if let p = parentHash, p == last, !requests.isEmpty {
                    let more = ids(of: hashes)
                    requests[requests.count - 1].hashIds += more
                    requests[requests.count - 1].inputLength += hashes.count * blockSize
                    figures.inputTokens += hashes.count * blockSize
                } else {
                    var chain: [[UInt8]] = []
                    var cursor = parentHash
                    while let c = cursor {
                        chain.append(c)
                        guard chain.count <= DataLimits.maxTokensPerRequest else { throw CLIError("batch \(figures.batches): a parent chain loops") }
                        cursor = parent[c]
                    }
                    let blocks = chain.reversed() + hashes
                    let hashIds = ids(of: blocks)
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
    private mutating func track(_ batch: VLLMEventDecoder.Batch) {
        for event in batch.events {
            switch event {
            case let .stored(hashes, _, _, _, eventMedium):
                guard eventMedium == nil || eventMedium == medium else { continue }
                figures.storedEvents += 1
                held.formUnion(hashes)
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

    /// The export of a whole recording (`EventRecording` bytes, either version); errors name the frame.
    static func read(_ bytes: [UInt8], medium: String) throws -> EventTraceExport {
        let contents: EventRecording.Contents
        do { contents = try EventRecording.read(bytes) } catch { throw CLIError(error.description) }
        var export = EventTraceExport(medium: medium, fromRequests: contents.frames.contains { $0.kind == .request })
        for (i, frame) in contents.frames.enumerated() {
            do {
                switch frame.kind {
                case .eventBatch: try export.add(try VLLMEventDecoder.decode(frame.payload))
                case .request: try export.add(try RecordedRequest.decode(frame.payload))
                }
            } catch let error as EventRecordingError {
                throw CLIError("frame \(i + 1): \(error.description)")
            }
        }
        return export
    }

    /// The dense ids of `hashes`, new ones numbered in order.
    private mutating func ids(of hashes: [[UInt8]]) -> [Int] {
        hashes.map { hash in
            if let known = ids[hash] { return known }
            let next = ids.count
            ids[hash] = next
            return next
        }
    }
}
