import Foundation

/// How close a run's output is to a reference run's: the measures `kvcache blend` reports for chunk reuse
/// against full prefill. Pure functions; each is O(its inputs) and allocates only scratch.
public enum OutputComparison {
    /// KL(reference || other) in nats of the two next-token distributions given as logits (softmax taken
    /// here, in Double): 0 for equal logits, and never negative.
    /// - Precondition: equal, non-zero lengths and finite logits.
    public static func klDivergence(reference: [Float], other: [Float]) -> Double {
        precondition(reference.count == other.count && !reference.isEmpty, "logits of different vocabularies")
        let p = logSoftmax(reference), q = logSoftmax(other)
        var kl = 0.0
        for i in p.indices where p[i] > -745 { kl += exp(p[i]) * (p[i] - q[i]) }
        return max(0, kl)
    }

    /// log softmax in Double. O(n).
    static func logSoftmax(_ logits: [Float]) -> [Double] {
        let m = Double(logits.max()!)
        let lse = m + log(logits.reduce(0.0) { $0 + exp(Double($1) - m) })
        return logits.map { Double($0) - lse }
    }

    /// The fraction of the first `n` reference tokens that `other` reproduces before its first divergence
    /// (a run shorter than `n` diverges where it ends). 1 when `n` is 0.
    public static func greedyAgreement(reference: [UInt32], other: [UInt32], n: Int) -> Double {
        guard n > 0 else { return 1 }
        var same = 0
        while same < n, same < reference.count, same < other.count, reference[same] == other[same] { same += 1 }
        return Double(same) / Double(n)
    }

    /// SQuAD's token F1 of `prediction` against the best of `answers` (lowercased, punctuation and the
    /// articles a/an/the removed, split on white space); 0 when there is no answer.
    public static func tokenF1(prediction: String, answers: [String]) -> Double {
        let predicted = normalizedTokens(prediction)
        return answers.map { answer in
            let truth = normalizedTokens(answer)
            guard !predicted.isEmpty, !truth.isEmpty else { return predicted == truth ? 1.0 : 0.0 }
            var counts: [String: Int] = [:]
            for t in truth { counts[t, default: 0] += 1 }
            var common = 0
            for t in predicted where (counts[t] ?? 0) > 0 { counts[t]! -= 1; common += 1 }
            guard common > 0 else { return 0.0 }
            let precision = Double(common) / Double(predicted.count), recall = Double(common) / Double(truth.count)
            return 2 * precision * recall / (precision + recall)
        }.max() ?? 0
    }

    /// SQuAD's answer normalization, as tokens.
    static func normalizedTokens(_ text: String) -> [String] {
        let lowered = text.lowercased().unicodeScalars.filter { !CharacterSet.punctuationCharacters.contains($0) && !CharacterSet.symbols.contains($0) }
        return String(String.UnicodeScalarView(lowered)).split(whereSeparator: { $0.isWhitespace })
            .map(String.init).filter { $0 != "a" && $0 != "an" && $0 != "the" }
    }
}
