@testable import KVCache
import Testing

/// Model-based: a `FlatBuffer` put through random appends (one, a run, a run written in place),
/// removals from the front and emptying holds exactly what a plain array does after the same steps,
/// including after emptying over stale elements and after a copy of it is changed (value semantics).
@Suite struct FlatBufferTests {
    @Test(arguments: [1, 2, 3, 4, 5] as [UInt64])
    func theBufferHoldsWhatAnArrayHolds(seed: UInt64) {
        var rng = SplitMix64(seed: seed)
        var buffer = FlatBuffer<UInt64>(reservingCapacity: Int.random(in: 0 ... 4, using: &rng))
        var model: [UInt64] = []
        var snapshot: (FlatBuffer<UInt64>, [UInt64])? = nil
        for _ in 0 ..< 3_000 {
            switch Int.random(in: 0 ..< 100, using: &rng) {
            case 0 ..< 30:
                let v = rng.next()
                buffer.append(v)
                model.append(v)
            case 30 ..< 45:
                let run = (0 ..< Int.random(in: 0 ... 9, using: &rng)).map { _ in rng.next() }
                run.withUnsafeBufferPointer { buffer.append(contentsOf: $0) }
                model.append(contentsOf: run)
            case 45 ..< 60:   // written in place, possibly fewer than the room asked for
                let room = Int.random(in: 0 ... 9, using: &rng)
                let run = (0 ..< Int.random(in: 0 ... room, using: &rng)).map { _ in rng.next() }
                buffer.append(count: room, filler: 0) { out in
                    #expect(out.count == room)
                    for (i, v) in run.enumerated() { out[i] = v }
                    return run.count
                }
                model.append(contentsOf: run)
            case 60 ..< 80:
                let n = Int.random(in: 0 ... model.count, using: &rng)
                buffer.removeFirst(n)
                model.removeFirst(n)
            case 80 ..< 85:
                buffer.removeAll()
                model.removeAll()
            case 85 ..< 90:
                snapshot = (buffer, model)   // a copy that later steps must not change
            default:
                break
            }
            #expect(buffer.count == model.count)
            #expect(buffer.isEmpty == model.isEmpty)
            #expect(buffer.last == model.last)
            #expect(buffer.withUnsafeBufferPointer { Array($0) } == model)
            if let (copy, copied) = snapshot { #expect(copy.withUnsafeBufferPointer { Array($0) } == copied) }
        }
    }
}
