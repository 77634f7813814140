import KVCache
import KVPlan
import KVTiers

/// L1 -> L2 -> L1 round trips of one block through a `KVTierManager` (host tier, stand-in device
/// memory, two transfer workers): each round trip evicts one device block to host (`willEvict`, which
/// also drops the coldest host block once the tier is full), looks its key up in the tiers and loads it
/// back into another device block, waiting for the load. Units are round trips. The keys rotate over more
/// blocks than the host tier holds, so every run is the steady state of a full tier. Measures the
/// transfer machinery (jobs, handles, completions), not bandwidth: blocks are 4 KiB.
public final class TierRoundTripWorkload: Workload {
    public let units: Int
    let tiers: KVTierManager
    let keys: [BlockKey]
    var next = 0
    var plan: [BlockKey] = [.zero]
    var target: [BlockID] = [1]

    /// - Parameter roundTrips: round trips per `run`.
    public init(roundTrips: Int = 256) throws {
        units = roundTrips
        // 2 layers x 2 x 8 heads x 64 x 2 tokens x fp16 = 4 KiB per block, two layer groups.
        let layout = try KVGeometry(layers: 2, kvHeads: 8, headDim: 64, dtype: .fp16, blockTokens: 2)
        let device = try HostDeviceMemory(layout: layout, capacityBlocks: 2)
        _ = device.withBlock(0) { SyntheticKV.fill($0, layout: layout, seed: 7) }
        var config = TierConfig(layout: layout, hostBlocks: 16)
        config.layerGroups = 2
        config.lockHostMemory = false
        config.calibrateAtStart = false
        tiers = try KVTierManager(config: config, device: device)
        keys = (0 ..< 64).map { BlockKey(lo: UInt64($0) &+ 1, hi: 0x7172_6970) }
    }

    public func prepare() throws {}

    public func run() throws {
        for _ in 0 ..< units {
            let key = keys[next]
            next = next == keys.count - 1 ? 0 : next + 1
            tiers.willEvict(block: 0, key: key)
            tiers.waitForEvictionCopies()
            plan[0] = key
            let found = tiers.lookup(keys: plan, deviceBlocks: 0)
            guard found.hostBlocks == 1 else { throw TierError.corrupt("round trip: block not on host") }
            let handle = try tiers.load(found, keys: plan, into: target)
            handle.wait()
            guard handle.loadedPrefixBlocks == 1 else { throw TierError.corrupt("round trip: load failed") }
        }
    }
}
