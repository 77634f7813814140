import Foundation
import KVCache
import Testing
@testable import KVReferenceEngine

@Suite("decode worker pool")
struct DecodeWorkersTests {
    @Test("every part runs exactly once per run and the run waits for all, with workers spinning or asleep")
    func partsRunOncePerRun() throws {
        var rng = SplitMix64(seed: 31)
        for threads in [2, 3, 5] {
            let workers = try #require(DecodeWorkers(threads: threads))
            #expect(workers.threads == threads)
            let runs = 300, maxParts = 4 * threads
            let marks = UnsafeMutablePointer<Int>.allocate(capacity: runs * maxParts)
            defer { marks.deallocate() }
            marks.initialize(repeating: 0, count: runs * maxParts)
            nonisolated(unsafe) let slots = marks
            for run in 0 ..< runs {
                // Now and then idle past the workers' spin time, so that they sleep and must be woken.
                if rng.next() % 8 == 0 { Thread.sleep(forTimeInterval: 0.001) }
                let parts = 1 + Int(rng.next() % UInt64(maxParts))
                workers.run(parts: parts) { part, count in
                    slots[run * maxParts + part] += count == parts ? 1 : 100
                    if part == count - 1 { usleep(50) }   // the caller must wait for the slowest part
                }
                let row = Array(UnsafeBufferPointer(start: marks + run * maxParts, count: maxParts))
                #expect(row == Array(repeating: 1, count: parts) + Array(repeating: 0, count: maxParts - parts),
                        "run \(run), \(parts) parts on \(threads) threads")
            }
        }
    }

    @Test("fewer than two threads need no pool")
    func singleThreadHasNoPool() {
        #expect(DecodeWorkers(threads: 1) == nil)
        #expect(DecodeWorkers(threads: 0) == nil)
    }
}
