import Foundation
import KVCache
import Testing
import KVData
@testable import KVPrediction
import KVScheduler

@Suite("Prediction: history predictor")
struct PredictionHistoryTests {
    @Test func adaptsOnlineWhenATemplateChanges() {
        let h = HistoryLengthPredictor(config: HistoryPredictorConfig(window: 16, minSamples: 3, calibrate: false))
        let input = PredictionInput(promptTokens: 300, templateKey: 0xabc, maxTokens: 4096)
        let cold = h.predict(input)
        #expect(cold.expected == 256 && cold.reserve == 4096)   // the prior; nothing known yet
        for _ in 0..<16 { h.observe(input, actualOutput: 50) }
        #expect(h.predict(input).expected == 50)
        for _ in 0..<16 { h.observe(input, actualOutput: 500) }
        let p = h.predict(input)
        #expect(p.expected == 500 && p.reserve == 500)
        #expect(p.bucket == LengthBuckets.standard.bucket(of: 500))
    }

    @Test func templatesAreKeptApartAndUnknownOnesFallBack() {
        let h = HistoryLengthPredictor()
        let a = PredictionInput(promptTokens: 100, templateKey: 1, maxTokens: 4096)
        let b = PredictionInput(promptTokens: 100, templateKey: 2, maxTokens: 4096)
        for i in 0..<10 { h.observe(a, actualOutput: 10 + i); h.observe(b, actualOutput: 1000 + i) }
        #expect(h.predict(a).expected < 30)
        #expect(h.predict(b).expected > 990)
        // An unseen template with the same prompt length uses that length bin's history (both templates).
        let unseen = h.predict(PredictionInput(promptTokens: 100, templateKey: 3, maxTokens: 4096))
        #expect(unseen.reserve >= 1000)
        // max_tokens caps both figures.
        let capped = h.predict(PredictionInput(promptTokens: 100, templateKey: 2, maxTokens: 64))
        #expect(capped.expected == 64 && capped.reserve == 64)
    }

    @Test func forgetsTheOldestTemplateWhenFull() {
        let h = HistoryLengthPredictor(config: HistoryPredictorConfig(minSamples: 1, maxTemplates: 2))
        for key in UInt64(1)...3 {
            h.observe(PredictionInput(promptTokens: 10, templateKey: key, maxTokens: 100), actualOutput: Int(key))
        }
        #expect(h.samplesKnown(for: PredictionInput(promptTokens: 10, templateKey: 3, maxTokens: 100)) == 1)
        // Each template uses two slots (with and without the length bin), so template 1 is gone.
        #expect(h.samplesKnown(for: PredictionInput(promptTokens: 10, templateKey: 1, maxTokens: 100)) == 0)
        h.observe(PredictionInput(promptTokens: 10, templateKey: 9, maxTokens: 100), actualOutput: -5)   // ignored
    }

    @Test func calibrationBringsTheUnderpredictRateToTheQuantile() {
        /// Share of requests outgrowing their reserve over a heavy-tailed stream (seeded).
        func underpredictRate(calibrate: Bool) -> Double {
            let h = HistoryLengthPredictor(config: HistoryPredictorConfig(window: 8, minSamples: 3, reserveQuantile: 0.95,
                                                                          calibrate: calibrate))
            var rng = SplitMix64(seed: 99)
            var under = 0
            let input = PredictionInput(promptTokens: 500, templateKey: 1, maxTokens: 1 << 20)
            for i in 0..<20_000 {
                let u = Double(rng.next() >> 11) / Double(1 << 53)
                let output = Int(20 / pow(max(u, 1e-9), 0.7))       // Pareto tail
                if i >= 1000 && output > h.predict(input).reserve { under += 1 }
                h.observe(input, actualOutput: output)
            }
            return Double(under) / 19_000
        }
        let raw = underpredictRate(calibrate: false)
        let calibrated = underpredictRate(calibrate: true)
        #expect(raw > 0.09)                       // the 95th percentile of 8 outputs is their maximum: ~1/9 exceed it
        #expect(abs(calibrated - 0.05) < 0.015)
    }

    /// Seeded random observe/predict sequences against a plain reference: per group the last
    /// `window` outputs, the finest group with `minSamples` outputs answers with its median and quantile.
    @Test(arguments: [UInt64(11), 12, 13])
    func matchesAReferenceModel(seed: UInt64) {
        let config = HistoryPredictorConfig(window: 8, minSamples: 3, reserveQuantile: 0.75, maxTemplates: 1024,
                                            calibrate: false)
        let h = HistoryLengthPredictor(config: config)
        var reference: [String: [Int]] = [:]
        var rng = SplitMix64(seed: seed)
        func bin(_ t: Int) -> Int { 63 - UInt64(t + 1).leadingZeroBitCount }
        func groups(_ template: UInt64?, _ tokens: Int) -> [String] {
            var g: [String] = []
            if let template { g += ["t\(template)b\(bin(tokens))", "t\(template)"] }
            return g + ["b\(bin(tokens))", "all"]
        }
        for _ in 0..<2000 {
            let template: UInt64? = rng.next() % 4 == 0 ? nil : rng.next() % 6
            let tokens = Int(rng.next() % 5000)
            let input = PredictionInput(promptTokens: tokens, templateKey: template, maxTokens: 100_000)
            if rng.next() % 2 == 0 {
                let output = Int(rng.next() % 3000)
                h.observe(input, actualOutput: output)
                for g in groups(template, tokens) { reference[g, default: []] = Array((reference[g, default: []] + [output]).suffix(8)) }
            } else {
                let p = h.predict(input)
                let g = groups(template, tokens).first { (reference[$0]?.count ?? 0) >= 3 }
                guard let g, let values = reference[g]?.sorted() else {
                    #expect(p.expected == 256 && p.reserve == 100_000)
                    continue
                }
                let n = values.count
                let median = n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2] + 1) / 2
                let rank = min(n - 1, Int((0.75 * Double(n)).rounded(.up)) - 1)
                #expect(p.expected == max(1, median))
                #expect(p.reserve == max(max(1, median), values[rank]))
            }
        }
    }
}
