import ArgumentParser

/// `kvcache predict`: trains and evaluates output-length predictors.
struct PredictCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "predict",
        abstract: "Train and evaluate output-length predictors (text: CASTILLO, ShareGPT; history: any).",
        subcommands: [Train.self, Eval.self, Validate.self, Compare.self, Bench.self]
    )

    enum DataFormat: String, ExpressibleByArgument, CaseIterable {
        case auto, castillo, sharegpt, mooncake
    }

    enum SplitRule: String, ExpressibleByArgument, CaseIterable {
        case data, hash
    }
}
