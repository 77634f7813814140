import ArgumentParser
import KVData
import KVSimulation

/// `--model`: a preset of the cost model's table (`ModelSpec.presets`), for both replay modes.
struct ModelPreset: ExpressibleByArgument {
    let spec: ModelSpec
    init?(argument: String) {
        guard let spec = ModelSpec.preset(named: argument) else { return nil }
        self.spec = spec
    }
    static var allValueStrings: [String] { ModelSpec.presets.map(\.name) }
    var defaultValueDescription: String { spec.name }
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
