import KVCache
import KVPlan
import Testing

@Suite("KVPlan: geometry and prompt segments")
struct KVPlanTests {
    /// An fp32 geometry has twice the bytes of the fp16 one of the same shape, at every granularity.
    @Test func fp32GeometryIsFourBytesPerElement() throws {
        let f32 = try KVGeometry(layers: 30, kvHeads: 3, headDim: 64, dtype: .fp32, blockTokens: 16)
        let f16 = try KVGeometry(layers: 30, kvHeads: 3, headDim: 64, dtype: .fp16, blockTokens: 16)
        #expect(f32.bytesPerBlock == 737_280)   // SmolLM2-135M's pool block
        #expect(f32.bytesPerBlock == 2 * f16.bytesPerBlock && f32.bytesPerLayer == 2 * f16.bytesPerLayer)
        #expect(f32.byteRange(layers: 1 ..< 2) == f32.bytesPerLayer ..< 2 * f32.bytesPerLayer)
    }

    /// Segments cover the prompt once, in order, and leave out empty runs.
    @Test(arguments: [(0, 0, 9), (8, 0, 9), (0, 8, 9), (4, 4, 9), (8, 8, 17), (4, 0, 4)])
    func segmentsCoverThePromptInOrder(device: Int, loaded: Int, prompt: Int) {
        let segments = PrefillSegment.prompt(deviceTokens: device, loadedTokens: loaded, promptTokens: prompt)
        var next = 0
        for s in segments {
            #expect(s.positions.lowerBound == next && !s.positions.isEmpty)
            next = s.positions.upperBound
        }
        #expect(next == prompt)
        #expect(segments.map(\.source) == [device > 0 ? .deviceHit : nil, loaded > 0 ? .tierLoad : nil,
                                           prompt > device + loaded ? .compute : nil].compactMap { $0 })
    }
}
