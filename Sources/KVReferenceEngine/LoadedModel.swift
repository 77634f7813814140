/// A GGUF llama model ready to run: the mapped file, its tokenizer and its dequantized weights.
public struct LoadedModel: Sendable {
    public let path: String
    public let file: GGUFFile
    public let tokenizer: BPETokenizer
    public let model: LlamaModel

    /// Opens, validates and dequantizes the model at `path`. O(parameters).
    public init(path: String) throws(GGUFError) {
        self.path = path
        file = try GGUFFile(path: path)
        tokenizer = try BPETokenizer(gguf: file)
        model = try LlamaModel(gguf: file)
        guard tokenizer.vocabularySize == model.config.vocabSize else {
            throw .malformed("tokenizer has \(tokenizer.vocabularySize) tokens, the model \(model.config.vocabSize)")
        }
    }
}
