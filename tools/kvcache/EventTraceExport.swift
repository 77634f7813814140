import KVData
import KVEvents

/// Rebuilds a Mooncake-format trace from a recorded KV-event stream (`EventRecording`), so that traffic
/// seen only through its events can be replayed.
///
/// Each `BlockStored` of the chosen medium (default `GPU`; events without a medium count as device
/// events) is one request: its prompt is the stored blocks' chain, the ancestors of
/// `parent_block_hash` (from the earlier stored events) followed by the stored blocks; a stored event
/// whose parent is the previous stored event's last block in the same batch extends that request.
/// `hash_ids` number the distinct block hashes densely in order of first appearance (equal id = same
/// prefix), `input_length` = blocks x `block_size`, `timestamp` = the batch's time in milliseconds after
/// the first batch's, `output_length` 0 (events do not carry it).
///
/// What events cannot show: a request served entirely from the cache stores nothing and publishes no
/// event, so it is not in the export; the lengths are whole blocks. Replaying the export with the same
/// block size and cache reproduces the hits of every exported request exactly as long as the dropped
/// full hits did not change the eviction order (always without eviction). O(events x chain depth); the
/// parent of every hash ever stored is kept.
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
    }

    let medium: String
    private(set) var requests: [Request] = []
    private(set) var figures = Figures()
    private var parent: [[UInt8]: [UInt8]] = [:]
    private var ids: [[UInt8]: Int] = [:]

    init(medium: String = "GPU") { self.medium = medium }

    /// Reads one batch's events.
    mutating func add(_ batch: VLLMEventDecoder.Batch) throws {
        figures.batches += 1
        let first = figures.firstTimestamp ?? batch.timestamp
        figures.firstTimestamp = first
        guard batch.timestamp >= (figures.lastTimestamp ?? batch.timestamp) else {
            throw CLIError("batch \(figures.batches): its time \(batch.timestamp) is before the previous batch's")
        }
        figures.lastTimestamp = batch.timestamp
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

    /// The requests as Mooncake JSONL.
    func jsonLines() throws(DataError) -> String {
        var text = ""
        for r in requests {
            text += try ReportEncoder.compact(r)
            text += "\n"
        }
        return text
    }

    /// The export of a whole recording (`EventRecording` bytes); errors name the frame.
    static func read(_ bytes: [UInt8], medium: String) throws -> EventTraceExport {
        var export = EventTraceExport(medium: medium)
        let frames: [ArraySlice<UInt8>]
        do { frames = try EventRecording.frames(bytes) } catch { throw CLIError(error.description) }
        for (i, frame) in frames.enumerated() {
            let batch: VLLMEventDecoder.Batch
            do { batch = try VLLMEventDecoder.decode(frame) } catch { throw CLIError("frame \(i + 1): \(error.description)") }
            try export.add(batch)
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
