import Foundation

/// Reads CacheBlend's RAG input shape (its MuSiQue, 2WikiMQA and HotpotQA files): one JSON array of
/// `{question, answers?, ctxs: [{title?, text}]}`, optionally gzip.
///
/// Each element is checked on its own: one that is not an object with a string `question`, an array
/// `ctxs` of objects with a string `text` (and a string `title`, when present), and `answers` an array
/// of strings (or one string), when present, is a `DataError.badLine` naming the file and the 1-based
/// element (`FILE:N: reason`). The document is held whole, so one larger than
/// `DataLimits.maxJSONArrayBytes` is refused. O(n) in the file size.
public enum RAGSamples {
    /// One retrieved passage.
    public struct Passage: Sendable, Equatable {
        public var title: String
        public var text: String
        public init(title: String = "", text: String) { self.title = title; self.text = text }
    }

    /// One question with its passages and reference answers (possibly none).
    public struct Sample: Sendable, Equatable {
        public var question: String
        public var answers: [String]
        public var passages: [Passage]
        public init(question: String, answers: [String], passages: [Passage]) {
            self.question = question; self.answers = answers; self.passages = passages
        }
    }

    /// Every sample of the file at `path`, in file order.
    /// - Throws: `DataError` naming `path` (unreadable, too large, not a JSON array, a bad element, no samples).
    public static func read(path: String) throws(DataError) -> [Sample] {
        let source = try ByteSource(path: path)
        var bytes: [UInt8] = []
        while try source.read(appendingTo: &bytes) {
            guard bytes.count <= DataLimits.maxJSONArrayBytes else {
                throw .badLine(path: path, line: 1, reason: "JSON document larger than \(DataLimits.maxJSONArrayBytes) bytes (the limit)")
            }
        }
        return try parse(bytes, path: path)
    }

    /// The samples of a JSON document already in memory; `path` labels errors.
    public static func parse(_ bytes: [UInt8], path: String) throws(DataError) -> [Sample] {
        let top: Any
        do { top = try JSONSerialization.jsonObject(with: Data(bytes)) } catch {
            throw .badLine(path: path, line: 1, reason: "not JSON")
        }
        guard let elements = top as? [Any] else { throw .badLine(path: path, line: 1, reason: "not a JSON array of samples") }
        guard !elements.isEmpty else { throw .badLine(path: path, line: 1, reason: "no samples") }
        guard elements.count <= DataLimits.maxRecords else {
            throw .badLine(path: path, line: 1, reason: "more than \(DataLimits.maxRecords) samples (the limit)")
        }
        var samples: [Sample] = []
        samples.reserveCapacity(elements.count)
        for (i, element) in elements.enumerated() {
            func bad(_ reason: String) -> DataError { .badLine(path: path, line: i + 1, reason: "sample \(i + 1): \(reason)") }
            guard let object = element as? [String: Any] else { throw bad("not an object") }
            guard let question = object["question"] as? String else { throw bad("no string \"question\"") }
            guard let ctxs = object["ctxs"] as? [Any] else { throw bad("no array \"ctxs\"") }
            var passages: [Passage] = []
            for (j, ctx) in ctxs.enumerated() {
                guard let c = ctx as? [String: Any], let text = c["text"] as? String else { throw bad("ctxs[\(j)] has no string \"text\"") }
                let title = c["title"] ?? ""
                guard let titleText = title as? String else { throw bad("ctxs[\(j)].title is not a string") }
                passages.append(Passage(title: titleText, text: text))
            }
            var answers: [String] = []
            switch object["answers"] {
            case nil, is NSNull: break
            case let one as String: answers = [one]
            case let many as [Any]:
                for a in many {
                    guard let s = a as? String else { throw bad("\"answers\" holds a non-string") }
                    answers.append(s)
                }
            default: throw bad("\"answers\" is neither a string nor an array of strings")
            }
            samples.append(Sample(question: question, answers: answers, passages: passages))
        }
        return samples
    }
}
