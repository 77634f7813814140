import KVCache
import KVTestSupport
import Testing
@testable import KVTiers

@Suite("Tier index and intrusive list")
struct TierIndexTests {
    /// Random pushes, removals and moves against an array model: order, count and links agree.
    @Test func intrusiveListMatchesAnArrayModel() throws {
        var list = IntrusiveList(capacity: 16)
        var model: [Int32] = []   // front first
        var rng = SplitMix64(seed: 7)
        for _ in 0 ..< 2000 {
            let node = Int32(rng.next() % 16)
            switch rng.next() % 3 {
            case 0:
                if !model.contains(node) {
                    list.pushFront(node)
                    model.insert(node, at: 0)
                }
            case 1:
                list.remove(node)
                model.removeAll { $0 == node }
            default:
                list.moveToFront(node)
                model.removeAll { $0 == node }
                model.insert(node, at: 0)
            }
            try list.validate()
            var walk: [Int32] = []
            var v = list.head
            while v != IntrusiveList.end {
                walk.append(v)
                v = list.next(v)
            }
            #expect(walk == model)
            #expect(list.count == model.count && list.tail == (model.last ?? IntrusiveList.end))
            #expect(list.contains(node) == model.contains(node))
        }
    }

    @Test func deviceResidencyFollowsTheLastBlockToHoldAKey() throws {
        var index = TierIndex(deviceBlocks: 4, hostSlots: 2)
        let a = testKey(1)
        let b = testKey(2)
        index.setDevice(block: 0, key: a, parent: .zero)
        index.setDevice(block: 1, key: b, parent: a)
        #expect(index.deviceBlock(of: a) == 0 && index.deviceBlock(of: b) == 1 && index.deviceCount == 2)
        _ = index.noteHit(block: 1)
        let (hits, parent) = index.clearDevice(block: 1, key: b)
        #expect(hits == 1 && parent == a)
        #expect(index.deviceBlock(of: b) == nil && index.deviceCount == 1)
        // Reusing block 0 for another key drops the old one.
        index.setDevice(block: 0, key: b, parent: .zero)
        #expect(index.deviceBlock(of: a) == nil && index.deviceBlock(of: b) == 0)
        // A host slot and a device block for one key share an entry; clearing one keeps the other.
        index.claim(1, key: b, parent: .zero, onDisk: false)
        index.markReady(1)
        _ = index.clearDevice(block: 0, key: b)
        #expect(index.readyHostSlot(of: b) == 1 && index.deviceBlock(of: b) == nil)
        try index.validate()
        let wasReady = index.release(1)
        #expect(wasReady)
        #expect(index.hostSlot(of: b) == nil && index.hostCount == 0 && index.lru.count == 0)
        try index.validate()
    }
}
