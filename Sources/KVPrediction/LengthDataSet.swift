import KVData
import KVScheduler

/// Labelled requests read from a dataset, with the records that were skipped.
public struct LengthDataSet: Sendable {
    public var examples: [LengthExample]
    /// Records that were well formed but unusable (for example a length row whose prompt is unknown).
    public var skippedRecords: Int

    public init(examples: [LengthExample], skippedRecords: Int = 0) {
        self.examples = examples
        self.skippedRecords = skippedRecords
    }

    /// The training part of the split.
    public var training: [LengthExample] { examples.filter { !$0.heldOut } }
    /// The held-out part of the split.
    public var heldOut: [LengthExample] { examples.filter { $0.heldOut } }

    /// Replaces the data's own split (CASTILLO's `split` field) by the stable hash split of
    /// `hashSplitHeldOut`, still by group. O(n).
    public mutating func splitByGroupHash() {
        for i in examples.indices { examples[i].heldOut = Self.hashSplitHeldOut(examples[i].group) }
    }

    /// Whether a group (prompt or conversation id) without an explicit split is held out:
    /// one group in five, chosen by a stable hash of its id.
    public static func hashSplitHeldOut(_ group: String) -> Bool {
        StableHash.mix(StableHash.fnv1a(group)) % 5 == 0
    }
}
