/// The byte-level BPE tokenizer of a GGUF file (`tokenizer.ggml.model == "gpt2"`): its vocabulary,
/// merge ranks and special tokens, with the `smollm` pre-tokenizer.
///
/// Encoding: special tokens (control and user-defined, longest match first) are cut out of the text
/// when `parseSpecial` is set; every other stretch is split by `PreTokenizer`, each chunk's UTF-8
/// bytes are spelled in `ByteLevelAlphabet` and merged by rank, lowest first and leftmost on ties.
/// Cost O(chunk length²) per chunk, chunks are short. Decoding maps each token's spelling back to bytes.
/// Immutable after construction, so one instance may be shared across threads.
public final class BPETokenizer: Sendable {
    /// The ggml token types (llama.cpp `llama_token_type`).
    public enum TokenType: Int32, Sendable {
        case undefined = 0, normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6
    }

    public let tokens: [String]
    public let types: [TokenType]
    public let bosID: UInt32?
    public let eosID: UInt32?
    /// Whether the file asks for a BOS token before every encoded text.
    public let addBOS: Bool
    /// The Jinja chat template stored in the file, if any (informational; `ChatTemplate` renders ChatML).
    public let chatTemplate: String?

    private let idOfToken: [String: UInt32]
    /// (left id << 32 | right id) -> (rank << 32 | merged id).
    private let merges: [UInt64: UInt64]
    private let alphabet = ByteLevelAlphabet()
    /// Token id of each byte's single-scalar spelling.
    private let byteTokens: [UInt32]
    /// Special tokens by first scalar, longest first.
    private let specials: [Unicode.Scalar: [(scalars: [Unicode.Scalar], id: UInt32)]]

    public var vocabularySize: Int { tokens.count }

    /// Reads the vocabulary from `tokenizer.ggml.*` metadata.
    public init(gguf: GGUFFile) throws(GGUFError) {
        let md = gguf.metadata
        guard let model = md["tokenizer.ggml.model"]?.stringValue else { throw .missing("tokenizer.ggml.model") }
        guard model == "gpt2" else { throw .malformed("tokenizer model \(model) is not byte-level BPE (gpt2)") }
        guard let tokenValues = md["tokenizer.ggml.tokens"]?.arrayValue else { throw .missing("tokenizer.ggml.tokens") }
        guard let mergeValues = md["tokenizer.ggml.merges"]?.arrayValue else { throw .missing("tokenizer.ggml.merges") }
        guard LlamaConfig.Limits.vocabSize.contains(tokenValues.count) else {
            throw .malformed("tokenizer.ggml.tokens holds \(tokenValues.count) tokens (\(LlamaConfig.Limits.vocabSize) allowed)")
        }
        var tokens: [String] = []
        tokens.reserveCapacity(tokenValues.count)
        for v in tokenValues {
            guard let s = v.stringValue else { throw .malformed("tokenizer.ggml.tokens holds a non-string") }
            tokens.append(s)
        }
        var types = [TokenType](repeating: .normal, count: tokens.count)
        if let typeValues = md["tokenizer.ggml.token_type"]?.arrayValue {
            guard typeValues.count == tokens.count else { throw .malformed("token_type count differs from tokens") }
            for (i, v) in typeValues.enumerated() {
                guard case let .signed(raw) = v, let t = TokenType(rawValue: Int32(clamping: raw)) else {
                    throw .malformed("token_type[\(i)] is not a token type")
                }
                types[i] = t
            }
        }
        var idOfToken: [String: UInt32] = [:]
        idOfToken.reserveCapacity(tokens.count)
        for (i, t) in tokens.enumerated() where idOfToken[t] == nil { idOfToken[t] = UInt32(i) }

        var merges: [UInt64: UInt64] = [:]
        merges.reserveCapacity(mergeValues.count)
        for (rank, v) in mergeValues.enumerated() {
            guard let line = v.stringValue, let space = line.firstIndex(of: " ") else {
                throw .malformed("merge \(rank) is not two tokens separated by a space")
            }
            let left = String(line[..<space]), right = String(line[line.index(after: space)...])
            guard let l = idOfToken[left], let r = idOfToken[right], let m = idOfToken[left + right] else { continue }
            let key = UInt64(l) << 32 | UInt64(r)
            if merges[key] == nil { merges[key] = UInt64(rank) << 32 | UInt64(m) }
        }

        let alphabet = ByteLevelAlphabet()
        // A few control bytes may lack a token (SmolLM2 has none for 0x04, 0x06, 0x13, 0x14, 0x16,
        // 0x1D); such a byte encodes as the unknown token.
        let unknown = md["tokenizer.ggml.unknown_token_id"]?.intValue.flatMap { $0 < tokens.count ? UInt32($0) : nil } ?? 0
        var byteTokens: [UInt32] = []
        for b in 0 ..< 256 {
            byteTokens.append(idOfToken[String(Character(alphabet.scalarOfByte[b]))] ?? unknown)
        }

        var specials: [Unicode.Scalar: [(scalars: [Unicode.Scalar], id: UInt32)]] = [:]
        for (i, t) in tokens.enumerated() where types[i] == .control || types[i] == .userDefined {
            let scalars = Array(t.unicodeScalars)
            guard let first = scalars.first else { continue }
            specials[first, default: []].append((scalars, UInt32(i)))
        }
        for k in specials.keys { specials[k]!.sort { $0.scalars.count > $1.scalars.count } }

        func optionalID(_ key: String) throws(GGUFError) -> UInt32? {
            guard let entry = md[key] else { return nil }
            guard let id = entry.intValue, id < tokens.count else {
                throw .malformed("\(key) is not a token id below \(tokens.count)")
            }
            return UInt32(id)
        }
        self.tokens = tokens
        self.types = types
        self.idOfToken = idOfToken
        self.merges = merges
        self.byteTokens = byteTokens
        self.specials = specials
        self.bosID = try optionalID("tokenizer.ggml.bos_token_id")
        self.eosID = try optionalID("tokenizer.ggml.eos_token_id")
        if case let .bool(b)? = md["tokenizer.ggml.add_bos_token"] { addBOS = b } else { addBOS = false }
        self.chatTemplate = md["tokenizer.chat_template"]?.stringValue
    }

    /// The id of a token spelled exactly `text`, if the vocabulary has one.
    public func id(of text: String) -> UInt32? { idOfToken[text] }

    /// Token ids of `text`. With `parseSpecial`, spellings of control tokens (`<|im_start|>`, ...) become
    /// those tokens; without it they are ordinary text. A BOS token leads if the file asks for one and
    /// `addBOS` is not overridden.
    public func encode(_ text: String, parseSpecial: Bool = true, addBOS: Bool? = nil) -> [UInt32] {
        var out: [UInt32] = []
        if addBOS ?? self.addBOS, let bos = bosID { out.append(bos) }
        let scalars = Array(text.unicodeScalars)
        var chunks: [Range<Int>] = []
        var textStart = 0
        var i = 0
        func flushText(upTo end: Int) {
            guard textStart < end else { return }
            chunks.removeAll(keepingCapacity: true)
            let piece = Array(scalars[textStart ..< end])
            PreTokenizer.split(piece, into: &chunks)
            for c in chunks { encodeChunk(piece[c], into: &out) }
        }
        while i < scalars.count {
            if parseSpecial, let candidates = specials[scalars[i]],
               let match = candidates.first(where: { i + $0.scalars.count <= scalars.count
                   && scalars[i ..< i + $0.scalars.count].elementsEqual($0.scalars) }) {
                flushText(upTo: i)
                out.append(match.id)
                i += match.scalars.count
                textStart = i
            } else {
                i += 1
            }
        }
        flushText(upTo: scalars.count)
        return out
    }

    /// Chunks longer than this many bytes are merged by `mergeLong` (O(n log n)) instead of the
    /// rescanning loop (O(n²), faster for the short chunks of ordinary text); both give the same tokens.
    static let longChunkBytes = 256

    /// BPE over one pre-tokenizer chunk.
    private func encodeChunk(_ chunk: ArraySlice<Unicode.Scalar>, into out: inout [UInt32]) {
        var symbols: [UInt32] = []
        var utf8 = String(String.UnicodeScalarView(chunk)).utf8.makeIterator()
        while let b = utf8.next() { symbols.append(byteTokens[Int(b)]) }
        if symbols.count > Self.longChunkBytes {
            out.append(contentsOf: mergeLong(symbols))
            return
        }
        out.append(contentsOf: mergeShort(symbols))
    }

    /// The merge loop by rescanning: lowest rank first, leftmost on ties. O(n²). Internal for tests.
    func mergeShort(_ symbols: [UInt32]) -> [UInt32] {
        var symbols = symbols
        while symbols.count > 1 {
            var best = UInt64.max, bestAt = -1
            for j in 0 ..< symbols.count - 1 {
                if let m = merges[UInt64(symbols[j]) << 32 | UInt64(symbols[j + 1])], m < best {
                    best = m; bestAt = j
                }
            }
            guard bestAt >= 0 else { break }
            symbols[bestAt] = UInt32(truncatingIfNeeded: best)
            symbols.remove(at: bestAt + 1)
        }
        return symbols
    }

    /// The same merges in the same order, O(n log n): symbols in a linked list, candidate pairs in a
    /// min-heap keyed by (rank, left position); a popped pair whose nodes changed since it was pushed
    /// is stale and skipped. A chunk of one very long word (a hostile prompt) stays fast. Internal for tests.
    func mergeLong(_ input: [UInt32]) -> [UInt32] {
        var symbols = input
        let n = symbols.count
        var next = Array(1 ... n), prev = Array(-1 ..< n - 1), alive = [Bool](repeating: true, count: n)
        next[n - 1] = -1
        // (rank << 32 | merged id, left position); ordered by rank, then position.
        var heap: [(key: UInt64, at: Int)] = []
        func less(_ a: (key: UInt64, at: Int), _ b: (key: UInt64, at: Int)) -> Bool {
            (a.key >> 32, a.at) < (b.key >> 32, b.at)
        }
        func push(_ at: Int) {
            let right = next[at]
            guard right >= 0, let m = merges[UInt64(symbols[at]) << 32 | UInt64(symbols[right])] else { return }
            heap.append((m, at))
            var c = heap.count - 1
            while c > 0 {
                let p = (c - 1) / 2
                guard less(heap[c], heap[p]) else { break }
                heap.swapAt(c, p)
                c = p
            }
        }
        func pop() -> (key: UInt64, at: Int) {
            let top = heap[0]
            heap[0] = heap[heap.count - 1]
            heap.removeLast()
            var p = 0
            while true {
                let l = 2 * p + 1, r = l + 1
                var m = p
                if l < heap.count, less(heap[l], heap[m]) { m = l }
                if r < heap.count, less(heap[r], heap[m]) { m = r }
                if m == p { break }
                heap.swapAt(p, m)
                p = m
            }
            return top
        }
        for i in 0 ..< n - 1 { push(i) }
        while !heap.isEmpty {
            let (key, at) = pop()
            let right = next[at]
            guard alive[at], right >= 0,
                  merges[UInt64(symbols[at]) << 32 | UInt64(symbols[right])] == key else { continue }   // stale
            symbols[at] = UInt32(truncatingIfNeeded: key)
            alive[right] = false
            next[at] = next[right]
            if next[right] >= 0 { prev[next[right]] = at }
            if prev[at] >= 0 { push(prev[at]) }
            push(at)
        }
        var out: [UInt32] = []
        var i = 0
        while i >= 0 { out.append(symbols[i]); i = next[i] }
        return out
    }

    /// The bytes of `ids` as text (invalid UTF-8 repaired). Control tokens are spelled out only when
    /// `includeSpecial` is set. Ids outside the vocabulary are skipped.
    public func decode(_ ids: [UInt32], includeSpecial: Bool = false) -> String {
        var bytes: [UInt8] = []
        for id in ids { appendBytes(of: id, includeSpecial: includeSpecial, to: &bytes) }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Appends the bytes one token stands for. O(token length).
    public func appendBytes(of id: UInt32, includeSpecial: Bool, to bytes: inout [UInt8]) {
        let i = Int(id)
        guard i < tokens.count else { return }
        switch types[i] {
        case .control, .unknown, .unused:
            if includeSpecial { bytes.append(contentsOf: tokens[i].utf8) }
        case .userDefined:
            bytes.append(contentsOf: tokens[i].utf8)
        case .normal, .byte, .undefined:
            for s in tokens[i].unicodeScalars {
                if let b = alphabet.byte(for: s) { bytes.append(b) } else { bytes.append(contentsOf: String(s).utf8) }
            }
        }
    }
}
