import KVCache
import Testing
@testable import KVReferenceEngine

@Suite("BPE tokenizer", .enabled(if: TestModel.isAvailable, TestModel.missingMessage))
struct TokenizerTests {
    @Test("token ids equal llama.cpp's for every fixture string")
    func matchesReference() throws {
        let tokenizer = try TestModel.require().tokenizer
        let fixture = try Fixtures.load("tokenizer.json", as: Fixtures.TokenizerFile.self)
        #expect(fixture.cases.count >= 6)
        for c in fixture.cases {
            #expect(tokenizer.encode(c.text) == c.ids, "text: \(c.text.debugDescription)")
        }
    }

    @Test("decode inverts encode, special tokens included when asked")
    func roundTrip() throws {
        let tokenizer = try TestModel.require().tokenizer
        let fixture = try Fixtures.load("tokenizer.json", as: Fixtures.TokenizerFile.self)
        for c in fixture.cases {
            #expect(tokenizer.decode(tokenizer.encode(c.text), includeSpecial: true) == c.text)
        }
        // Seeded random byte-level strings: any UTF-8 text survives the round trip.
        var rng = SplitMix64(seed: 7)
        let alphabet = Array("aZ09 \t\n'.,;:!?-_()[]{}<>|éüß中文🙂\u{0301}".unicodeScalars)
        for _ in 0 ..< 200 {
            let n = Int(rng.next() % 24)
            var s = String.UnicodeScalarView()
            for _ in 0 ..< n { s.append(alphabet[Int(rng.next() % UInt64(alphabet.count))]) }
            let text = String(s)
            #expect(tokenizer.decode(tokenizer.encode(text, parseSpecial: false)) == text)
        }
    }

    @Test("special tokens are parsed only when asked; ChatML prompt has the expected frame")
    func specialTokens() throws {
        let tokenizer = try TestModel.require().tokenizer
        let imStart = try #require(tokenizer.id(of: "<|im_start|>"))
        let imEnd = try #require(tokenizer.id(of: "<|im_end|>"))
        #expect(tokenizer.encode("<|im_start|>") == [imStart])
        #expect(!tokenizer.encode("<|im_start|>", parseSpecial: false).contains(imStart))
        let ids = tokenizer.encode(ChatTemplate.render(user: "Hi"))
        #expect(ids.first == imStart)
        #expect(ids.filter { $0 == imStart }.count == 3)
        #expect(ids.filter { $0 == imEnd }.count == 2)
        #expect(tokenizer.decode(ids) == "system\n\(ChatTemplate.defaultSystem)\nuser\nHi\nassistant\n")
        #expect(tokenizer.eosID == 2 && tokenizer.bosID == 1 && !tokenizer.addBOS)
    }

    @Test("digits are split one by one, whitespace runs keep their last space for the next word")
    func preTokenizerRules() {
        func chunks(_ s: String) -> [String] {
            let scalars = Array(s.unicodeScalars)
            var out: [Range<Int>] = []
            PreTokenizer.split(scalars, into: &out)
            return out.map { String(String.UnicodeScalarView(scalars[$0])) }
        }
        #expect(chunks("abc 123") == ["abc", " ", "1", "2", "3"])
        #expect(chunks("it's   ok\n\nyes") == ["it", "'s", "  ", " ok", "\n", "\n", "yes"])
        #expect(chunks("x  ") == ["x", "  "])
        #expect(chunks("a+=b") == ["a", "+=", "b"])
        #expect(chunks("Ünïcødé 東京") == ["Ünïcødé", " 東京"])
    }

    @Test("long chunks merge by heap exactly as short ones merge by rescanning, and stay fast")
    func longChunkMergesMatch() throws {
        let tokenizer = try TestModel.require().tokenizer
        let alphabet = ByteLevelAlphabet()
        func symbols(_ text: String) -> [UInt32] {
            text.utf8.map { tokenizer.id(of: String(Character(alphabet.scalarOfByte[Int($0)])))! }
        }
        var rng = SplitMix64(seed: 7)
        let pieces = ["a", "b", "ab", "the", "er", "in", "ing", "tion", "0", "ü", "東"]
        for length in [300, 1000, 3000] {
            for _ in 0 ..< 5 {
                var text = ""
                while text.utf8.count < length { text += pieces[Int(rng.next() % UInt64(pieces.count))] }
                let s = symbols(text)
                #expect(tokenizer.mergeLong(s) == tokenizer.mergeShort(s), "\(text.prefix(60))")
            }
        }
        for text in [String(repeating: "a", count: 2000), String(repeating: "ab", count: 1000)] {
            #expect(tokenizer.mergeLong(symbols(text)) == tokenizer.mergeShort(symbols(text)))
        }
        // One 100,000-byte word (a hostile prompt): O(n log n), so it finishes.
        let word = tokenizer.encode(String(repeating: "a", count: 100_000))
        #expect(tokenizer.decode(word) == String(repeating: "a", count: 100_000))
    }
}
