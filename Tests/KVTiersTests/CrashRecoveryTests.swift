#if canImport(Glibc)
import Glibc
#endif
import Testing
import KVCache
import KVTestSupport
import KVPlan
@testable import KVTiers

/// Blocks of 256 KiB: large writes span many pages, and the kernel stops a write between pages when the
/// writer gets SIGKILL, so the kills below really do leave torn records behind.
let crashLayout = try! KVGeometry(layers: 8, kvHeads: 4, headDim: 128, dtype: .fp16, blockTokens: 16)

@Suite("Disk tier crash recovery")
struct CrashRecoveryTests {
    /// A child process writes blocks as fast as it can and is killed with SIGKILL at a random moment;
    /// the parent reopens the store and checks that every block it serves has exactly the bytes written
    /// under its key. Three rounds on the same directory, each child appending to what the last one left.
    @Test func sigkillWhileWritingServesNothingCorrupt() async throws {
        let dir = TempDirectory()
        let path = dir.path
        var torn = 0
        for round in 0 ..< 5 {
            let delay = UInt32(5_000 + 5_000 * round)
            let salt = UInt64(round * 1_000_000)
            await #expect(processExitsWith: .signal(SIGKILL)) { [path = path as String, delay = delay as UInt32, salt = salt as UInt64] in
                var config = DiskStoreConfig(directory: path, capacityBytes: 256 << 20, layout: crashLayout)
                config.compress = false   // keep the child's time in pwrite, where the kill should land
                let store = try DiskBlockStore(config)
                let pattern = KeyPayload.bytes(for: .zero, count: crashLayout.bytesPerBlock)
                var i = 0
                while true {
                    let key = testKey(i, salt: salt)
                    let bytes = stampedBytes(for: key, pattern: pattern)
                    _ = bytes.withUnsafeBytes { store.put(key, bytes: $0) }
                    if i == 0 { killSelf(afterMicroseconds: delay) }
                    i += 1
                }
            }
            let store = try DiskBlockStore(DiskStoreConfig(directory: path, capacityBytes: 256 << 20, layout: crashLayout))
            #expect(store.count > 0, "round \(round): the child wrote nothing before it was killed")
            torn += store.statistics.droppedOnOpen
            let pattern = KeyPayload.bytes(for: .zero, count: crashLayout.bytesPerBlock)
            var out = [UInt8](repeating: 0, count: crashLayout.bytesPerBlock)
            for key in store.keys() {
                let r = out.withUnsafeMutableBytes { store.read(key, into: $0) }
                #expect(r == .hit)
                let same = stampedBytes(for: key, pattern: pattern).withUnsafeBytes { e in
                    out.withUnsafeBytes { memcmp(e.baseAddress!, $0.baseAddress!, e.count) == 0 }
                }
                #expect(same, "round \(round): corrupt block served")
            }
            store.close()
            let report = try DiskStoreCheck.run(directory: path, repair: false)
            #expect(report.corrupt == 0, "the reopen already dropped every torn record")
        }
        // How many kills tore a record is up to the scheduler; it is reported, not asserted.
        print("sigkill rounds: 5, torn records dropped on reopen: \(torn)")
    }
}
