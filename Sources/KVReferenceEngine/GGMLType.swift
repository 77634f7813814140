/// The ggml tensor element types, numbered as in ggml.h. Only F32, F16, Q4_1 and Q8_0 can be
/// dequantized here; the others are known by name so that a refusal can say which type it met.
public enum GGMLType: UInt32, Sendable, CaseIterable {
    case f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8, q8_1 = 9
    case q2_K = 10, q3_K = 11, q4_K = 12, q5_K = 13, q6_K = 14, q8_K = 15
    case iq2_xxs = 16, iq2_xs = 17, iq3_xxs = 18, iq1_s = 19, iq4_nl = 20, iq3_s = 21, iq2_s = 22
    case iq4_xs = 23, i8 = 24, i16 = 25, i32 = 26, i64 = 27, f64 = 28, iq1_m = 29, bf16 = 30
    case tq1_0 = 34, tq2_0 = 35, mxfp4 = 39

    /// The name ggml prints for the type ("Q4_1", "BF16", ...).
    public var name: String {
        switch self {
        case .f32: "F32"; case .f16: "F16"; case .q4_0: "Q4_0"; case .q4_1: "Q4_1"
        case .q5_0: "Q5_0"; case .q5_1: "Q5_1"; case .q8_0: "Q8_0"; case .q8_1: "Q8_1"
        case .q2_K: "Q2_K"; case .q3_K: "Q3_K"; case .q4_K: "Q4_K"; case .q5_K: "Q5_K"
        case .q6_K: "Q6_K"; case .q8_K: "Q8_K"; case .iq2_xxs: "IQ2_XXS"; case .iq2_xs: "IQ2_XS"
        case .iq3_xxs: "IQ3_XXS"; case .iq1_s: "IQ1_S"; case .iq4_nl: "IQ4_NL"; case .iq3_s: "IQ3_S"
        case .iq2_s: "IQ2_S"; case .iq4_xs: "IQ4_XS"; case .i8: "I8"; case .i16: "I16"; case .i32: "I32"
        case .i64: "I64"; case .f64: "F64"; case .iq1_m: "IQ1_M"; case .bf16: "BF16"
        case .tq1_0: "TQ1_0"; case .tq2_0: "TQ2_0"; case .mxfp4: "MXFP4"
        }
    }

    /// Elements per block and bytes per block for the types this reader dequantizes; nil otherwise.
    public var supportedBlockLayout: (elements: Int, bytes: Int)? {
        switch self {
        case .f32: (1, 4)
        case .f16: (1, 2)
        case .q4_1: (32, 20)   // f16 scale d, f16 minimum m, 16 bytes of nibbles
        case .q8_0: (32, 34)   // f16 scale d, 32 signed bytes
        default: nil
        }
    }

    /// A display name for a raw type number, known or not.
    public static func name(of raw: UInt32) -> String {
        GGMLType(rawValue: raw)?.name ?? "unknown type \(raw)"
    }
}
