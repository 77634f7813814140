import KVCache
import KVData
import KVEvents
import KVSimulation

/// `kvcache replay --record-events FILE`: a version 2 `EventRecording` of the replay. For each request,
/// in order: a request frame (`RecordedRequest`: arrival, lengths, the block keys it looked up, its hit
/// tokens), then the manager's KV events it caused as one `KVEventBatch` (encoded by `VLLMEventEncoder`,
/// the publisher's encoder, so the batches are what a subscriber would have received; none when the
/// request changed nothing), both timed by the request's arrival. Written through `OutputFile` at the
/// end. O(blocks + events) per request; the file is held in memory.
final class EventRecorder {
    let path: String
    private let encoder = VLLMEventEncoder()
    private let requestEncoder = RecordedRequestEncoder()
    private var events: [KVEvent] = []
    private var keys: [BlockKey] = []
    private var bytes = EventRecording.magicV2

    init(path: String) { self.path = path }

    /// Records `request` (its keys as the replay gives them, `hitTokens` found), then drains `manager`'s
    /// events into one batch; both at the request's arrival.
    func record(_ request: TraceRequest, hitTokens: Int, manager: KVCacheManager) {
        keys.removeAll(keepingCapacity: true)
        SequentialReplay.appendKeys(of: request, blockTokens: manager.blockTokens, to: &keys)
        EventRecording.append(requestEncoder.encode(timestamp: request.arrival, inputTokens: request.inputTokens,
                                                    outputTokens: request.outputTokens, blockTokens: manager.blockTokens,
                                                    keys: keys, hitTokens: hitTokens),
                              kind: .request, to: &bytes)
        events.removeAll(keepingCapacity: true)
        manager.drainEvents(into: &events)
        guard !events.isEmpty else { return }
        EventRecording.append(encoder.encode(events, timestamp: request.arrival, dataParallelRank: 0),
                              kind: .eventBatch, to: &bytes)
    }

    func write() throws {
        do { try OutputFile.write(bytes, to: path) } catch { throw CLIError(error.description) }
    }
}
