import ArgumentParser
import KVData
import KVHybrid
import KVSimulation

/// `--model`: a preset of the cost model's table (`ModelSpec.presets`), for both replay modes, or a
/// hybrid attention + SSM model (`HybridModel.presets`, `--format marconi` only: `spec` is then unused).
struct ModelPreset: ExpressibleByArgument {
    let spec: ModelSpec
    var hybrid: HybridModel? = nil
    init?(argument: String) {
        if let hybrid = HybridModel.preset(named: argument), let spec = ModelSpec.presets.first {
            self.spec = spec
            self.hybrid = hybrid
            return
        }
        guard let spec = ModelSpec.preset(named: argument) else { return nil }
        self.spec = spec
    }
    static var allValueStrings: [String] { ModelSpec.presets.map(\.name) + HybridModel.presets.map(\.name) }
    var defaultValueDescription: String { hybrid?.name ?? spec.name }
}

/// `--hardware`: a preset of the cost model's table (`HardwareSpec.presets`), for both replay modes.
struct HardwarePreset: ExpressibleByArgument {
    let spec: HardwareSpec
    init?(argument: String) {
        guard let spec = HardwareSpec.preset(named: argument) else { return nil }
        self.spec = spec
    }
    static var allValueStrings: [String] { HardwareSpec.presets.map(\.name) }
    var defaultValueDescription: String { spec.name }
}

/// `--format`: a trace format, both replay modes.
extension TraceFormat: ExpressibleByArgument {
    public init?(argument: String) { self.init(rawValue: argument.lowercased()) }
}
