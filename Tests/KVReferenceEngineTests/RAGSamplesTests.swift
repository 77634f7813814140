import Foundation
import KVData
import Testing

/// CacheBlend's RAG sample files: the shapes they take and the `FILE:N: reason` errors of the rest.
struct RAGSamplesTests {
    func parse(_ text: String) throws(DataError) -> [RAGSamples.Sample] { try RAGSamples.parse(Array(text.utf8), path: "f.json") }

    @Test func readsQuestionsPassagesAndAnswers() throws {
        let samples = try parse("""
        [{"question": "q1", "answers": ["a", "b"], "ctxs": [{"title": "T", "text": "x"}, {"text": "y"}]},
         {"question": "q2", "answers": "c", "ctxs": []}, {"question": "q3", "ctxs": [{"text": "z", "title": ""}], "answers": null}]
        """)
        #expect(samples == [
            .init(question: "q1", answers: ["a", "b"], passages: [.init(title: "T", text: "x"), .init(text: "y")]),
            .init(question: "q2", answers: ["c"], passages: []),
            .init(question: "q3", answers: [], passages: [.init(text: "z")]),
        ])
    }

    @Test(arguments: [
        ("{}", "f.json:1: not a JSON array of samples"),
        ("[", "f.json:1: not JSON"),
        ("[]", "f.json:1: no samples"),
        ("[{\"question\": \"q\", \"ctxs\": []}, 3]", "f.json:2: sample 2: not an object"),
        ("[{\"ctxs\": []}]", "f.json:1: sample 1: no string \"question\""),
        ("[{\"question\": \"q\", \"ctxs\": [{\"title\": \"t\"}]}]", "f.json:1: sample 1: ctxs[0] has no string \"text\""),
        ("[{\"question\": \"q\", \"ctxs\": [{\"text\": \"t\", \"title\": 1}]}]", "f.json:1: sample 1: ctxs[0].title is not a string"),
        ("[{\"question\": \"q\", \"ctxs\": [], \"answers\": {}}]", "f.json:1: sample 1: \"answers\" is neither a string nor an array of strings"),
    ])
    func refusesMalformedFilesNamingTheElement(text: String, message: String) {
        #expect(throws: DataError.self) { try parse(text) }
        do { _ = try parse(text) } catch { #expect(error.description == message) }
    }

    @Test func aMissingFileIsCannotRead() {
        #expect {
            _ = try RAGSamples.read(path: "/nonexistent/musique.json")
        } throws: { ($0 as? DataError)?.description.hasPrefix("/nonexistent/musique.json: cannot read") == true }
    }
}
