import KVCache
import KVTestSupport
#if canImport(Glibc)
import Glibc
#endif
import Testing
import KVPlan
@testable import KVTiers

@Suite("Host tier and layout")
struct HostTierTests {
    @Test func slotsAllocateAndReleaseInConstantTime() throws {
        let pool = try HostSlabPool(blockBytes: 1000, capacity: 5, lockMemory: false, warn: { _ in })
        #expect(pool.slotBytes == 1024)
        var taken: [Int32] = []
        while let s = pool.allocate() { taken.append(s) }
        #expect(Set(taken).count == 5 && pool.freeCount == 0)
        try pool.release(taken[2])
        #expect(throws: TierError.self) { try pool.release(taken[2]) }   // double free: state unchanged
        #expect(throws: TierError.self) { try pool.release(99) }
        #expect(pool.freeCount == 1)
        #expect(pool.allocate() == taken[2])
        // Slots do not overlap.
        for (i, s) in taken.enumerated() { _ = pool.withSlot(s, count: 1000) { $0.initializeMemory(as: UInt8.self, repeating: UInt8(i)) } }
        for (i, s) in taken.enumerated() { pool.withSlot(s, count: 1000) { b in #expect(b.allSatisfy { $0 == UInt8(i) }) } }
    }

    @Test func placementChecksTheNodeAndVerifiesTheBinding() throws {
        final class Warnings: @unchecked Sendable { var lines: [String] = [] }
        let w = Warnings()
        let missing = try HostSlabPool(blockBytes: 4096, capacity: 4, placement: .node(999), lockMemory: false, warn: { w.lines.append($0) })
        #expect(missing.placement.requestedNode == nil)
        #expect(missing.placement.fallbackReason?.contains("999") == true)
        #expect(w.lines.count == 1, "one warning")
        let plain = try HostSlabPool(blockBytes: 4096, capacity: 4, placement: .local, lockMemory: false, warn: { _ in })
        #expect(plain.placement.requestedNode == nil)
        if Numa.isAvailable { #expect(plain.placement.verifiedNode != nil && plain.placement.bindingVerified) }
        if Numa.isAvailable {
            let local = try HostSlabPool(blockBytes: 4096, capacity: 4, placement: .node(0), lockMemory: true, warn: { _ in })
            #expect(local.placement.requestedNode == 0)
            #expect(local.placement.verifiedNode == 0 && local.placement.bindingVerified)
        }
    }

    @Test func pciAddressResolvesThroughSysfs() throws {
        let root = TempDirectory()
        let dev = root.path + "/bus/pci/devices/0000:65:00.0"
        for p in [root.path + "/bus", root.path + "/bus/pci", root.path + "/bus/pci/devices", dev] { mkdir(p, 0o700) }
        let fd = open(dev + "/numa_node", O_WRONLY | O_CREAT, 0o600)
        _ = write(fd, "0\n", 2); close(fd)
        #expect(try PCINumaLocator.node(forPCIAddress: "65:00.0", sysfsRoot: root.path) == 0)
        #expect(try PCINumaLocator.node(forPCIAddress: "0000:66:00.0", sysfsRoot: root.path) == nil)
        #expect(throws: TierError.self) { try PCINumaLocator.node(forPCIAddress: "not-an-address", sysfsRoot: root.path) }
        let pool = try HostSlabPool(blockBytes: 4096, capacity: 2, placement: .nearDevice(pciAddress: "0000:65:00.0"),
                                    lockMemory: false, sysfsRoot: root.path, warn: { _ in })
        if Numa.isAvailable { #expect(pool.placement.requestedNode == 0 && pool.placement.bindingVerified) }
    }

    @Test func layoutSizesAndGroups() throws {
        let l = KVGeometry.llama3_8B()
        #expect(l.bytesPerBlock == 2 * 1024 * 1024)
        #expect(l.bytesPerToken == 128 * 1024)
        let groups = l.layerGroups(3)
        #expect(groups.first?.lowerBound == 0 && groups.last?.upperBound == 32)
        #expect(zip(groups, groups.dropFirst()).allSatisfy { $0.upperBound == $1.lowerBound })
        #expect(throws: KVCacheError.self) { _ = try KVGeometry(layers: 0, kvHeads: 1, headDim: 1, dtype: .fp8, blockTokens: 1) }
        #expect(throws: KVCacheError.self) { _ = try KVGeometry(layers: 1 << 20, kvHeads: 1 << 10, headDim: 128, dtype: .fp16, blockTokens: 16) }
        #expect(try KVGeometry(layers: 2, kvHeads: 1, headDim: 4, dtype: .fp8, blockTokens: 4).bytesPerBlock == 64)
    }
}
