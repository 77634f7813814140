import KVCache
import KVData
import KVEvents

/// `kvcache replay --record-events FILE`: the manager's KV events as an `EventRecording`, one
/// `KVEventBatch` per request that changed the cache (encoded by `VLLMEventEncoder`, the publisher's
/// encoder, so the file holds what a subscriber would have received), timed by the request's arrival.
/// Written through `OutputFile` at the end. O(events) per request; the file is held in memory.
final class EventRecorder {
    let path: String
    private let encoder = VLLMEventEncoder()
    private var events: [KVEvent] = []
    private var bytes = EventRecording.magic

    init(path: String) { self.path = path }

    /// Drains `manager`'s events into one batch at `time` (seconds); nothing when there is none.
    func record(_ manager: KVCacheManager, at time: Double) {
        events.removeAll(keepingCapacity: true)
        manager.drainEvents(into: &events)
        guard !events.isEmpty else { return }
        EventRecording.append(encoder.encode(events, timestamp: time, dataParallelRank: 0), to: &bytes)
    }

    func write() throws {
        do { try OutputFile.write(bytes, to: path) } catch { throw CLIError(error.description) }
    }
}
