/// Why a GGUF file could not be read. Every case names what was wrong and where, so a user can tell a
/// truncated download from a file of another format or an unsupported quantization.
public enum GGUFError: Error, Equatable, CustomStringConvertible {
    /// The file could not be opened or mapped (`errno` text included).
    case cannotOpen(path: String, reason: String)
    /// The first four bytes are not "GGUF".
    case badMagic(found: UInt32)
    /// Only GGUF version 3 is read.
    case unsupportedVersion(UInt32)
    /// The file ends before the structure being read does (at byte `offset`, `needed` more bytes).
    case truncated(what: String, offset: Int, needed: Int)
    /// A structurally impossible value (negative count, bad value type, overlapping tensor, ...).
    case malformed(String)
    /// A tensor uses a ggml type this reader does not dequantize; the type is named.
    case unsupportedTensorType(tensor: String, type: String)
    /// A metadata key or tensor the model needs is absent or has the wrong type.
    case missing(String)

    public var description: String {
        switch self {
        case let .cannotOpen(path, reason): return "cannot open GGUF file \(path): \(reason)"
        case let .badMagic(found): return "not a GGUF file (magic 0x\(String(found, radix: 16)))"
        case let .unsupportedVersion(v): return "unsupported GGUF version \(v) (only version 3 is read)"
        case let .truncated(what, offset, needed):
            return "GGUF file truncated: \(what) at byte \(offset) needs \(needed) more bytes"
        case let .malformed(why): return "malformed GGUF file: \(why)"
        case let .unsupportedTensorType(tensor, type):
            return "tensor \(tensor) has unsupported type \(type) (supported: F32, F16, Q4_1, Q8_0)"
        case let .missing(what): return "GGUF file lacks \(what)"
        }
    }
}
