// Publishes the KV events of a seeded random serving sequence on a ZMQ PUB socket (with a replay
// socket), then prints the cache's contents, for tools/events/check_events.py to compare with what a
// vLLM subscriber rebuilt from the events.
//
// usage: kvcache-events-check PUB_ENDPOINT REPLAY_ENDPOINT SEED STEPS
// Prints "ready" once bound and waits for a line on stdin before the first operation; after the last
// batch prints one JSON line {"last_seq", "block_size", "contents": {hash: parent or null}, "host": [hash]}
// with the device pool's cached blocks and the host tier's, then serves replays until stdin closes.
import Glibc
import KVCache
import KVEvents
import KVPlan
import KVTiers

/// Writes one line to a file descriptor, unbuffered (the subscriber reads stdout line by line).
func line(_ text: String, to fd: Int32 = 1) {
    var text = text + "\n"
    text.withUTF8 { _ = write(fd, $0.baseAddress, $0.count) }
}

func fail(_ message: String) -> Never {
    line("kvcache-events-check: \(message)", to: 2)
    exit(2)
}

let args = CommandLine.arguments
guard args.count == 5, let seed = UInt64(args[3]), let steps = Int(args[4]) else {
    fail("usage: kvcache-events-check PUB_ENDPOINT REPLAY_ENDPOINT SEED STEPS")
}
var pubConfig = ZmqEventPublisher.Config()
pubConfig.endpoint = args[1]
pubConfig.replayEndpoint = args[2]
let publisher: ZmqEventPublisher
do { publisher = try ZmqEventPublisher(pubConfig) } catch { fail("\(error)") }

let blockTokens = 4
let m = try KVCacheManager(KVCacheConfig(blockTokens: blockTokens, capacityBlocks: 48, recordEvents: true))
// For odd seeds a host tier under the device pool: evicted device blocks are copied there (medium CPU)
// and leave it when it is full. Even seeds run the device pool alone, so its evictions take the batch
// path (no eviction observer) and their removals are recorded from it.
let withTiers = seed % 2 == 1
let layout = try KVGeometry(layers: 2, kvHeads: 1, headDim: 8, dtype: .fp16, blockTokens: blockTokens)
let memory = try HostDeviceMemory(layout: layout, capacityBlocks: 48)
var tierConfig = TierConfig(layout: layout, hostBlocks: 24)
tierConfig.lockHostMemory = false
tierConfig.synchronousEvictionCopies = true
tierConfig.calibrateAtStart = false
tierConfig.layerGroups = 2
tierConfig.recordEvents = true
let tiers: KVTierManager? = withTiers ? try KVTierManager(config: tierConfig, device: memory) : nil
if let tiers {
    m.evictionObserver = tiers
    m.lowerTierEvents = [tiers]
}
var rng = SplitMix64(seed: seed)
// A few shared prefixes so that prompts hit, deduplicate and evict each other's blocks.
let templates: [[UInt32]] = (0 ..< 5).map { _ in
    (0 ..< Int.random(in: 0 ... 4 * blockTokens, using: &rng)).map { _ in UInt32.random(in: 0 ..< 100, using: &rng) }
}
var live: [SequenceID] = []
var batch: [KVEvent] = []
var everStored = Set<BlockKey>()
var nextID: Int64 = 0

line("ready")
_ = readLine()

@MainActor func serve(_ id: SequenceID) throws {
    let hit = try m.lookup(id)
    let todo = try m.tokenCount(id) - hit.cachedTokens
    guard case .allocated = try m.allocate(id, newTokens: todo) else {
        try m.free(id)
        return
    }
    try m.commit(id, computedTokens: todo)
    live.append(id)
}

for _ in 0 ..< steps {
    switch UInt8.random(in: 0 ..< 100, using: &rng) {
    case 0 ..< 40:   // a new request
        let id = SequenceID(nextID); nextID += 1
        let suffix = (0 ..< Int.random(in: 1 ... 3 * blockTokens, using: &rng)).map { _ in UInt32.random(in: 0 ..< 100, using: &rng) }
        try m.addSequence(id, prompt: templates.randomElement(using: &rng)! + suffix)
        try serve(id)
    case 40 ..< 65:  // a decode step of a live request
        guard let id = live.randomElement(using: &rng) else { continue }
        try m.append(id, tokens: [UInt32.random(in: 0 ..< 100, using: &rng)])
        if case .allocated = try m.allocate(id, newTokens: 1) { try m.commit(id, computedTokens: 1) }
    case 65 ..< 70:  // parallel sampling
        guard let parent = live.randomElement(using: &rng),
              try m.computedTokens(parent) == m.tokenCount(parent) else { continue }
        let child = SequenceID(nextID); nextID += 1
        try m.fork(parent, into: child)
        live.append(child)
    case 70 ..< 99:  // a request finishes
        guard !live.isEmpty else { continue }
        try m.free(live.remove(at: Int.random(in: 0 ..< live.count, using: &rng)))
    default:         // the prefix cache is reset
        for id in live { try m.free(id) }
        live.removeAll()
        try m.reset()
    }
    tiers?.waitForTransfers()
    m.drainEvents(into: &batch)
    for case .blockStored(let keys, _, _, .device, _) in batch { everStored.formUnion(keys) }
    publisher.publish(batch, timestamp: ZmqEventPublisher.now())
    batch.removeAll()
}

var contents: [String] = []
for b in 0 ..< Int32(m.capacityBlocks) where m.index.isCached(b) {
    let parent = m.index.parent(of: b)
    let p = parent == PrefixIndex.noParent ? "null" : "\"\(m.index.key(of: parent))\""
    contents.append("\"\(m.index.key(of: b))\": \(p)")
}
// The host tier's blocks: every key ever stored, asked one by one (after the last batch: the lookups
// publish nothing).
var hostKeys: [String] = []
for k in everStored where tiers?.lookup(keys: [k], deviceBlocks: 0).locations == [.host] {
    hostKeys.append("\"\(k)\"")
}
line("{\"last_seq\": \(publisher.nextSequence - 1), \"block_size\": \(blockTokens), \"contents\": {\(contents.joined(separator: ", "))}, \"host\": [\(hostKeys.joined(separator: ", "))]}")
while readLine() != nil {}
publisher.close()
