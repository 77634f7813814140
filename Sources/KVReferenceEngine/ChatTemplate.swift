/// The ChatML prompt format SmolLM2-Instruct was trained on:
/// `<|im_start|>role\ncontent<|im_end|>\n` per message, then `<|im_start|>assistant\n` to prompt a reply.
/// As in the model's own template, a conversation without a system message gets the default one.
public enum ChatTemplate {
    public struct Message: Sendable, Equatable {
        public var role: String
        public var content: String
        public init(role: String, content: String) { self.role = role; self.content = content }
    }

    /// SmolLM2's default system message.
    public static let defaultSystem = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"

    /// The prompt text for `messages`, ending with the assistant header when `addGenerationPrompt`.
    public static func render(_ messages: [Message], addGenerationPrompt: Bool = true) -> String {
        var text = ""
        if messages.first?.role != "system" {
            text += "<|im_start|>system\n\(defaultSystem)<|im_end|>\n"
        }
        for m in messages { text += "<|im_start|>\(m.role)\n\(m.content)<|im_end|>\n" }
        if addGenerationPrompt { text += "<|im_start|>assistant\n" }
        return text
    }

    /// A single user turn.
    public static func render(user: String) -> String {
        render([Message(role: "user", content: user)])
    }
}
