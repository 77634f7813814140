import ArgumentParser
import Foundation
import KVBench
import KVCache
import KVData
import KVPrediction
import KVScheduler

extension PredictCommand {
    struct Train: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Train the text predictor on the training split and save it.")

        @OptionGroup var dataOptions: DataOptions
        @Option(help: "Where to write the model file.")
        var out: String
        @OptionGroup var trainingArguments: TrainingArguments
        @OptionGroup(title: "Report") var reportOutput: ReportOptions
    var json: Bool { reportOutput.machine }

        func run() throws {
            do { try TextLengthModelFile.checkTarget(out) } catch { throw CLIError(error.description) }
            let (set, format) = try dataOptions.load()
            let training = set.training
            guard !training.isEmpty else { throw CLIError("the split leaves no training examples") }
            let options = try trainingArguments.options()
            note("training on \(training.count) examples (\(set.examples.count - training.count) held out), format \(format.rawValue)")
            let start = KVClock.monotonicNanos()
            let model: TextLengthModel
            do {
                model = try TextLengthTrainer.train(training, options: options) { p in
                    note(String(format: "epoch %d: loss %.4f, %.1f s", p.epoch, p.meanLoss, p.seconds))
                }
            } catch {
                throw CLIError(error.description)
            }
            let seconds = KVClock.seconds(from: start, to: KVClock.monotonicNanos())
            do {
                try TextLengthModelFile.save(model, to: out)
            } catch {
                throw CLIError(error.description)
            }
            let bytes = (try? FileManager.default.attributesOfItem(atPath: out)[.size] as? Int) ?? 0
            note(String(format: "wrote %@ (%d bytes) after %.1f s of training", out, bytes, seconds))
            if json {
                try reportOutput.emit(command: "predict train", object: .object([
                    ("model", .string(out)), ("format", .string(format.rawValue)), ("train_examples", .int(training.count)),
                    ("held_out_examples", .int(set.examples.count - training.count)), ("epochs", .int(options.epochs)),
                    ("train_s", .double(seconds)), ("model_bytes", .int(bytes)), ("training_mean", .double(model.trainingMean)),
                ]))
            }
        }
    }
}
