import ArgumentParser
import Foundation
import KVCache
import KVPlan
import KVTestSupport
import KVTiers

/// `kvcache disk`: tools for the L3 disk tier's directory.
struct DiskCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "disk", abstract: "Check and stress the disk tier.",
        subcommands: [Fsck.self, Stress.self])

    /// `kvcache disk fsck DIR`: checks every record, drops torn and corrupt ones.
    struct Fsck: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check every record of a disk tier directory and drop the torn or corrupt ones.")
        @Argument(help: "The disk tier directory.") var directory: String
        @Flag(help: "Only report; do not rewrite damaged segments.") var dryRun = false
        @OptionGroup(title: "Report") var reportOutput: ReportOptions
        var json: Bool { reportOutput.machine }

        func run() throws {
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDir), isDir.boolValue else {
                throw CLIError("no such directory: \(directory)")
            }
            let r: DiskCheckReport
            do { r = try DiskStoreCheck.run(directory: directory, repair: !dryRun) }
            catch { throw CLIError("fsck failed: \(error)") }
            note("fsck \(directory): \(r.segments) segments, \(r.blocks) records, \(r.ok) ok, \(r.corrupt) corrupt, \(r.dropped) dropped"
                 + (r.skipped > 0 ? ", \(r.skipped) files skipped" : ""))
            if json {
                try reportOutput.emit(command: "disk fsck", object: ["blocks": r.blocks, "ok": r.ok, "corrupt": r.corrupt, "dropped": r.dropped,
                                      "segments": r.segments, "rewritten_segments": r.rewrittenSegments,
                                      "skipped": r.skipped])
            }
        }
    }

    /// `kvcache disk stress DIR --seconds S`: writes, reads back and verifies random blocks. Safe to kill
    /// at any moment and restart on the same directory: the restart verifies what the last run left.
    struct Stress: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write, read back and verify random blocks; exits non-zero if a wrong block is ever served.")
        @Argument(help: "The disk tier directory (created if missing).") var directory: String
        @Option(help: "How long to run.") var seconds: Double = 5
        @Option(name: .customLong("block-kib"), help: "Block size in KiB (each block the key-derived payload every verifying tool uses).") var blockKiB: Int = 256
        @Option(name: .customLong("capacity-mib"), help: "Disk tier capacity in MiB.") var capacityMiB: Int = 512
        @OptionGroup(title: "Report") var reportOutput: ReportOptions
        var json: Bool { reportOutput.machine }

        func validate() throws {
            guard seconds > 0, seconds <= 86_400 else { throw ValidationError("--seconds must be in (0, 86400]") }
            guard blockKiB >= 1, blockKiB <= 64 * 1024 else { throw ValidationError("--block-kib must be in 1...65536") }
            guard capacityMiB >= 1 else { throw ValidationError("--capacity-mib must be positive") }
        }

        func run() throws {
            let layout = try KVGeometry(layers: 1, kvHeads: 1, headDim: blockKiB * 1024 / 2 / 2 / 16, dtype: .fp16, blockTokens: 16)
            let store: DiskBlockStore
            do {
                store = try DiskBlockStore(DiskStoreConfig(directory: directory, capacityBytes: capacityMiB << 20, layout: layout))
            } catch { throw CLIError("cannot open \(directory): \(error)") }
            var out = [UInt8](repeating: 0, count: layout.bytesPerBlock)
            var writes = 0, reads = 0, hits = 0, mismatches = 0, corruptDetected = 0, notStored = 0
            let start = store.statistics
            var known = store.keys()
            // First verify everything a previous (possibly killed) run left behind.
            for k in known {
                reads += 1
                switch out.withUnsafeMutableBytes({ store.read(k, into: $0) }) {
                case .hit: hits += 1; if !Self.matches(out, key: k) { mismatches += 1 }
                case .corrupt: corruptDetected += 1
                case .miss: break
                }
            }
            let verifiedAtStart = hits
            var rng = SplitMix64(seed: UInt64(getpid()) &* 0x9E37_79B9 ^ UInt64(Date().timeIntervalSince1970 * 1e6))
            let deadline = Date().addingTimeInterval(seconds)
            var block = [UInt8](repeating: 0, count: layout.bytesPerBlock)
            while Date() < deadline {
                if known.isEmpty || rng.next() % 2 == 0 {
                    let key = BlockKey(lo: rng.next(), hi: 0x7374_7265_7373_0000 | (rng.next() & 0xFFFF))
                    block.withUnsafeMutableBytes { KeyPayload.fill($0, key: key) }
                    switch block.withUnsafeBytes({ store.put(key, bytes: $0) }) {
                    case .stored: writes += 1; known.append(key)
                    case .alreadyStored: break
                    case .notStored: notStored += 1
                    }
                } else {
                    let k = known[Int(rng.next() % UInt64(known.count))]
                    reads += 1
                    switch out.withUnsafeMutableBytes({ store.read(k, into: $0) }) {
                    case .hit: hits += 1; if !Self.matches(out, key: k) { mismatches += 1 }
                    case .corrupt: corruptDetected += 1
                    case .miss: break
                    }
                }
                if known.count > 1 << 16 { known.removeFirst(known.count / 2) }
            }
            store.close()
            let s = store.statistics
            note("stress \(directory): \(writes) writes, \(reads) reads (\(hits) verified hits), \(mismatches) mismatches, "
                 + "\(corruptDetected) corrupt detected, \(start.droppedOnOpen) dropped at start, \(verifiedAtStart) verified at start")
            if json {
                try reportOutput.emit(command: "disk stress", object: [
                    "writes": writes, "reads": reads, "hits": hits, "mismatches": mismatches,
                    "corrupt_detected": corruptDetected, "not_stored": notStored,
                    "blocks_at_start": start.blocks, "dropped_at_start": start.droppedOnOpen,
                    "verified_at_start": verifiedAtStart, "blocks": s.blocks, "evicted_blocks": s.evictedBlocks,
                    "seconds": seconds,
                ])
            }
            if mismatches > 0 { throw ExitCode(2) }
        }

        /// Whether a block read back is `key`'s payload (`KeyPayload`, the bytes every verifying tool
        /// derives from a key, so a restarted run checks what another process wrote). O(bytes).
        static func matches(_ bytes: [UInt8], key: BlockKey) -> Bool {
            bytes.withUnsafeBytes { KeyPayload.matches($0, key: key) }
        }
    }
}
