import KVCache
import Testing
@testable import KVChunks

/// CacheBlend's loading controller on hand-computed cases and against a brute-force search.
struct LoadingControllerTests {
    /// 1/1024 s per token, no pair term, 1 KiB per token and power-of-two bandwidths: every time below is
    /// exact in binary floating point.
    let cost = try! RecomputeCost(secondsPerToken: 1.0 / 1024, secondsPerContextPair: 0)

    @Test func slowLoadingRaisesTheRatioAndTheCheapestTierThatHidesIsChosen() throws {
        let controller = try LoadingController(cost: cost, layers: 10, kvBytesPerToken: 1024, minimumRatio: 0.15)
        // 1000 reused tokens: 150/1024 s of recompute at the floor. A disk at 2^19 B/s loads them in 2000/1024 s
        // (not hidden); RAM at 2^30 B/s almost at once. The disk is listed first (cheaper) but does not hide.
        let disk = LoadingController.Tier(name: "disk", bytesPerSecond: 524_288), ram = LoadingController.Tier(name: "ram", bytesPerSecond: 1_073_741_824)
        let d = try controller.decide(reusedTokens: 1000, contextTokens: 1100, tiers: [disk, ram])
        #expect(d.tier == 1 && d.ratio == 0.15 && d.recomputedTokens == 150 && d.loadHidden)
        // An SSD at 2^22 B/s loads in 250/1024 s: recomputing 250 tokens costs nothing more than loading.
        let ssd = try controller.decide(reusedTokens: 1000, contextTokens: 1100, tiers: [.init(name: "ssd", bytesPerSecond: 4_194_304)])
        #expect(ssd.tier == 0 && ssd.recomputedTokens == 250 && ssd.ratio == 0.25 && ssd.loadHidden)
        #expect(ssd.pipelinedSeconds == 250.0 / 1024 + 25.0 / 1024)
        // The disk alone: everything is recomputed and loading still does not hide.
        let slowest = try controller.decide(reusedTokens: 1000, contextTokens: 1100, tiers: [disk])
        #expect(slowest.ratio == 1 && !slowest.loadHidden && slowest.pipelinedSeconds == 2000.0 / 1024 + 100.0 / 1024)
    }

    @Test func agreesWithABruteForceSearch() throws {
        var rng = SplitMix64(seed: 17)
        for _ in 0 ..< 200 {
            let cost = try RecomputeCost(secondsPerToken: Double(rng.next() % 100 + 1) * 1e-5, secondsPerContextPair: Double(rng.next() % 10) * 1e-9)
            let minimum = Double(rng.next() % 11) / 10
            let controller = try LoadingController(cost: cost, layers: Int(rng.next() % 40) + 1, kvBytesPerToken: 20_000, minimumRatio: minimum)
            let reused = Int(rng.next() % 3000), context = reused + Int(rng.next() % 500)
            let tiers = (0 ..< Int(rng.next() % 3) + 1).map { LoadingController.Tier(name: "t\($0)", bytesPerSecond: Double(rng.next() % 1000 + 1) * 1e7) }
            let d = try controller.decide(reusedTokens: reused, contextTokens: context, tiers: tiers)
            let floor = try RecomputeSelection.budget(ratio: minimum, tokens: reused)
            func recompute(_ t: Int) -> Double { cost.seconds(tokens: t, contextBefore: context - t) }
            let load = Double(reused) * 20_000 / tiers[d.tier].bytesPerSecond
            // The most tokens at or above the floor whose recompute fits under the load (the floor if none).
            let best = (floor ... max(floor, reused)).last { recompute($0) <= load } ?? floor
            #expect(d.recomputedTokens == max(floor, best))
            // The first tier (cheapest) that hides, else the fastest prefill.
            let hiding = tiers.firstIndex { Double(reused) * 20_000 / $0.bytesPerSecond <= recompute(floor) }
            if let hiding { #expect(d.tier == hiding) } else { #expect(d.loadSeconds >= recompute(floor)) }
        }
    }

    /// Loading pays while its pipelined prefill is no longer than recomputing every reused token: a fast
    /// tier is loaded, a tier so slow that loading takes longer than full recompute is not.
    @Test func aTierSlowerThanRecomputeIsNotLoaded() throws {
        let controller = try LoadingController(cost: cost, layers: 10, kvBytesPerToken: 1024)
        let fast = try controller.decide(reusedTokens: 1000, contextTokens: 2000, tiers: [.init(name: "host", bytesPerSecond: 20e9)])
        #expect(fast.load && fast.pipelinedSeconds <= fast.recomputeAllSeconds)
        let slow = try controller.decide(reusedTokens: 1000, contextTokens: 2000, tiers: [.init(name: "far", bytesPerSecond: 1e3)])
        #expect(!slow.load && slow.loadSeconds > slow.recomputeAllSeconds)
        #expect(slow.recomputeAllSeconds == cost.seconds(tokens: 1000, contextBefore: 1000))
    }

    @Test func refusesBadInput() throws {
        #expect(throws: ChunkError.self) { try LoadingController(cost: cost, layers: 0, kvBytesPerToken: 1) }
        #expect(throws: ChunkError.self) { try LoadingController(cost: cost, layers: 1, kvBytesPerToken: 1, minimumRatio: 2) }
        let c = try LoadingController(cost: cost, layers: 1, kvBytesPerToken: 1)
        #expect(throws: ChunkError.self) { try c.decide(reusedTokens: 1, contextTokens: 1, tiers: []) }
        #expect(throws: ChunkError.self) { try c.decide(reusedTokens: 5, contextTokens: 4, tiers: [.init(name: "x", bytesPerSecond: 1)]) }
        #expect(throws: ChunkError.self) { try c.decide(reusedTokens: 1, contextTokens: 1, tiers: [.init(name: "x", bytesPerSecond: .infinity)]) }
    }
}
