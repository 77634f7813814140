import KVData
import KVScheduler

/// The form of a prompt, noted while `FeatureHasher` reads its words: how an instruction starts,
/// whether it asks a question, how many lines and code symbols it has, and whether it asks for a
/// number of units ("3 sentences", "100 words", "3 short sentences": a unit word at most one word
/// after the number).
///
/// Words themselves tie a model to the prompt domains it was trained on; these coarse signals mean
/// the same thing in a coding task and in a chat question, so they carry over to new domains.
/// Counts cover the part of the prompt the hasher reads (the leading and trailing tokens).
/// Every method is O(1) and allocates nothing.
struct PromptShape {
    /// Words and symbols read.
    var tokens = 0
    /// The hash of the first word (0: none yet).
    var firstWord: UInt64 = 0
    var questionMarks = 0
    var lines = 0
    /// Brackets, braces, `;`, `=`, `<`, `>`, backticks and `#`: symbols typical of code.
    var codeSymbols = 0
    /// The unit word of the first "N unit" request, and N (-1: none).
    var requestedUnit: UInt64 = 0
    var requestedCount = -1
    /// The value of the last number among the previous two words ("3 short sentences"), else -1.
    private var previousNumber = -1
    /// Words read since `previousNumber`.
    private var wordsSinceNumber = 0

    /// Words that follow a requested count, singular and plural.
    static let countUnits: [UInt64] = [
        "word", "words", "sentence", "sentences", "paragraph", "paragraphs", "line", "lines", "item", "items",
        "example", "examples", "way", "ways", "tip", "tips", "point", "points", "step", "steps", "question",
        "questions", "reason", "reasons", "idea", "ideas", "name", "names", "bullet", "character", "characters",
    ].map { StableHash.fnv1a($0) }

    /// Notes a word (lowercased FNV-1a hash) and its value when it is all digits (else -1).
    @inline(__always) mutating func word(_ h: UInt64, number: Int) {
        if firstWord == 0 { firstWord = h }
        if number >= 0 {
            previousNumber = number
            wordsSinceNumber = 0
            return
        }
        guard previousNumber >= 0 else { return }
        if requestedCount < 0 && Self.countUnits.contains(h) {
            requestedUnit = h
            requestedCount = previousNumber
            previousNumber = -1
        } else {
            wordsSinceNumber += 1
            if wordsSinceNumber == 2 { previousNumber = -1 }
        }
    }

    /// Notes a symbol byte (anything that is neither a word byte nor a space).
    @inline(__always) mutating func symbol(_ b: UInt8) {
        switch b {
        case 0x3f: questionMarks += 1                       // ?
        case 0x0a: lines += 1
        case 0x28, 0x29, 0x5b, 0x5d, 0x7b, 0x7d, 0x3b, 0x3d, 0x3c, 0x3e, 0x60, 0x23:
            codeSymbols += 1                                // ( ) [ ] { } ; = < > ` #
        default: break
        }
        if b != 0x2d { previousNumber = -1 }                // "3-5 items" asks for 5
    }
}
