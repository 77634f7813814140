import KVCache
import KVChunks
import KVPlan

/// RoPE re-rotation of a chunk's cached keys (PIE) and, on the same bytes, `memcpy`: what moving a reused
/// chunk to a new position costs next to merely copying its keys. Keys are `tokens x kvHeads` vectors of
/// `headDim` fp32 per layer, all layers in one buffer (the keys of a chunk across a model); a run rotates
/// them in place by +delta, the next by -delta, so the values stay bounded. Units are bytes.
public final class RopeRotationWorkload: Workload {
    public let units: Int
    let rotator: RopeRotator
    let vectors: Int
    let headDim: Int
    let keys: UnsafeMutablePointer<Float>
    var delta = 1_000

    public init(layout: RopeSpec.Layout, tokens: Int = 512, layers: Int = 8, kvHeads: Int = 8, headDim: Int = 128) throws {
        rotator = RopeRotator(spec: try RopeSpec(base: 500_000, dims: headDim, headDim: headDim, layout: layout))
        vectors = tokens * layers * kvHeads
        self.headDim = headDim
        units = vectors * headDim * 4
        keys = .allocate(capacity: vectors * headDim)
        var rng = SplitMix64(seed: 11)
        for i in 0 ..< vectors * headDim { keys[i] = Float(Int(rng.next() % 2001) - 1000) / 1000 }
    }
    deinit { keys.deallocate() }

    public func prepare() {}
    public func run() {
        rotator.rotate(keys, count: vectors, stride: headDim, by: delta)
        delta = -delta
    }
}

/// `memcpy` of `bytes` bytes between two buffers; units are bytes.
public final class CopyWorkload: Workload {
    public let units: Int
    let source: UnsafeMutableRawPointer
    let target: UnsafeMutableRawPointer

    public init(bytes: Int) {
        units = bytes
        source = .allocate(byteCount: bytes, alignment: 64)
        target = .allocate(byteCount: bytes, alignment: 64)
        source.initializeMemory(as: UInt8.self, repeating: 1, count: bytes)
        target.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
    }
    deinit { source.deallocate(); target.deallocate() }

    public func prepare() {}
    public func run() { target.copyMemory(from: source, byteCount: units) }
}

/// Re-rotation against `memcpy` of the same bytes, measured in one run (interleaved repetitions).
public struct RopeRotationFigures: Sendable {
    public var layout: RopeSpec.Layout
    public var bytes: Int
    /// Bytes of keys re-rotated per second (in place).
    public var rotateBytesPerSecond: Double
    /// Bytes copied per second by `memcpy` (source to a second buffer).
    public var copyBytesPerSecond: Double
    /// rotate / copy throughput: 1 means re-rotating costs what copying costs.
    public var ratio: Double { rotateBytesPerSecond / copyBytesPerSecond }

    /// Medians of `repetitions` runs of each workload, alternating between the two so that both see the
    /// same machine load.
    public static func measure(layout: RopeSpec.Layout, tokens: Int = 512, repetitions: Int = 15) throws -> RopeRotationFigures {
        let rotate = try RopeRotationWorkload(layout: layout, tokens: tokens)
        let copy = CopyWorkload(bytes: rotate.units)
        rotate.run(); copy.run()  // touch every page once
        var r: [Double] = [], c: [Double] = []
        for _ in 0 ..< repetitions {
            r.append(try Measure.median(repetitions: 1) { rotate.run() })
            c.append(try Measure.median(repetitions: 1) { copy.run() })
        }
        r.sort(); c.sort()
        let bytes = Double(rotate.units)
        return RopeRotationFigures(layout: layout, bytes: rotate.units, rotateBytesPerSecond: bytes / r[r.count / 2],
                                   copyBytesPerSecond: bytes / c[c.count / 2])
    }
}
