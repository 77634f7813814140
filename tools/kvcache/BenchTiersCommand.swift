import ArgumentParser
import Foundation
import KVData
import KVCache
import KVPlan
import KVReferenceEngine
import KVSimulation
import KVTiers
import KVBench

/// `kvcache bench tiers`: measures (with `KVBench.TierBandwidthBenchmark`) the tier data path on KV-like data (normal values with per-channel
/// scales, Llama-3-8B block shape, 2 MiB per fp16 block) for fp16 and bf16: memcpy as the reference,
/// L1 -> L2 and L2 -> L1 through the transfer engine, disk tier writes and cold reads, and the codec.
/// With `--kv-dir`, the codec is also measured on real KV written by `kvcache kv-dump` (`real_kv`).
struct BenchTiersCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tiers", abstract: "Measure host/disk tier bandwidth and the KV codec on fp16 and bf16 data.")
    @OptionGroup(title: "Report") var reportOutput: ReportOptions
    var json: Bool { reportOutput.machine }
    @Option(help: "Directory for the disk tier (default: a temporary directory under /tmp, removed after).") var diskDir: String?
    @Option(help: "A directory written by `kvcache kv-dump`: also measure the codec on that real KV, as fp16.") var kvDir: String?
    @Option(help: "Blocks per measurement (2 MiB each for fp16).") var blocks: Int = 48
    @Option(help: "Repetitions per measurement; the best is reported.") var repeats: Int = 3

    func validate() throws {
        guard (4 ... 4096).contains(blocks) else { throw ValidationError("--blocks must be in 4...4096") }
        guard (1 ... 20).contains(repeats) else { throw ValidationError("--repeats must be in 1...20") }
    }

    func run() throws {
        // Real KV first: a bad --kv-dir fails before the minute of synthetic measurements.
        var realKV: [String: Any]?
        if let kvDir {
            note("bench tiers: real KV from \(kvDir) ...")
            realKV = try measureRealKV(directory: kvDir)
        }
        var perDType: [String: [String: Any]] = [:]
        for dtype in [KVDType.fp16, .bf16] {
            note("bench tiers: \(dtype) ...")
            perDType[dtype.rawValue] = try measure(dtype: dtype)
        }
        // One run per dtype; the machine's figures and the real KV's beside them.
        var report: [String: Any] = ["runs": [perDType["fp16"]!, perDType["bf16"]!]]
        report["blocks"] = blocks
        // Figures on a shared machine move with its load: record it beside them.
        if let text = try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8),
           let first = text.split(separator: " ").first, let l = Double(first) { report["loadavg_1m"] = l }
        report["cpus"] = ProcessInfo.processInfo.activeProcessorCount
        if let realKV { report["real_kv"] = realKV }
        for d in ["fp16", "bf16"] {
            let r = perDType[d]!
            func f(_ k: String) -> Double { r[k] as? Double ?? 0 }
            note(String(format: "%@: memcpy %.1f GB/s, L1->L2 %.1f (%.2fx), L2->L1 %.1f (%.2fx), disk write %.2f, disk read %.2f GB/s, "
                        + "zstd x%.3f plain / x%.3f codec (%.3fx), codec %.2f / %.2f GB/s (per CPU second %.2f / %.2f), disk tier used: %@",
                        d, f("memcpy_gbps"), f("l1_to_l2_gbps"), f("l1_to_l2_gbps") / f("memcpy_gbps"), f("l2_to_l1_gbps"),
                        f("l2_to_l1_gbps") / f("memcpy_gbps"), f("disk_write_gbps"), f("disk_read_gbps"), f("zstd_ratio_plain"),
                        f("zstd_ratio_codec"), f("zstd_ratio_codec") / f("zstd_ratio_plain"), f("codec_compress_gbps"),
                        f("codec_decompress_gbps"), f("codec_compress_gbps_per_cpu_second"), f("codec_decompress_gbps_per_cpu_second"), (r["disk_tier_used_llama3_8b_h100"] as? Bool ?? false) ? "yes" : "no"))
        }
        if let r = report["real_kv"] as? [String: Any] {
            func f(_ k: String) -> Double { r[k] as? Double ?? 0 }
            let synthetic = f("zstd_ratio_codec") / f("zstd_ratio_plain")
            note(String(format: "real KV (%@, %d blocks of %d B as fp16): zstd x%.3f plain / x%.3f codec (%.3fx), codec %.2f / %.2f GB/s "
                        + "(per CPU second %.2f / %.2f)", r["model"] as? String ?? "?", r["blocks"] as? Int ?? 0, r["block_bytes"] as? Int ?? 0,
                        f("zstd_ratio_plain"), f("zstd_ratio_codec"), synthetic, f("codec_compress_gbps"), f("codec_decompress_gbps"),
                        f("codec_compress_gbps_per_cpu_second"), f("codec_decompress_gbps_per_cpu_second")))
        }
        if json { try reportOutput.emit(command: "bench tiers", object: report) }
    }

    private func measure(dtype: KVDType) throws -> [String: Any] {
        let dir = diskDir ?? NSTemporaryDirectory() + "kvcache-bench-\(getpid())-\(dtype)"
        do { try OutputFolder.create(dir) } catch { throw CLIError(error.description) }
        defer { if diskDir == nil { try? FileManager.default.removeItem(atPath: dir) } }
        let bench = TierBandwidthBenchmark(blocks: blocks, repeats: repeats, diskDirectory: dir, keepLastDiskRun: diskDir != nil)
        let m: TierBandwidthFigures
        do { m = try bench.measure(dtype: dtype) } catch { throw CLIError("bench tiers (\(dtype)): \(error)") }
        let layout = KVGeometry.llama3_8B(dtype: dtype)
        let B = m.blockBytes
        let recompute = RooflineCostModel(model: ModelSpec.preset(named: "llama3-8b")!,
                                          hardware: HardwareSpec.preset(named: "h100")!).prefillSecondsPerToken()
        let adm = try m.admission(recomputeSecondsPerToken: recompute)
        var r: [String: Any] = [
            "dtype": dtype.rawValue,
            "block_bytes": B,
            "memcpy_gbps": m.memcpyGBps,
            "l1_to_l2_gbps": m.l1ToL2GBps,
            "l2_to_l1_gbps": m.l2ToL1GBps,
            "disk_write_gbps": m.diskWriteGBps,
            "disk_read_gbps": m.diskReadGBps,
            "recompute_ms_per_block_llama3_8b_h100": recompute * Double(layout.blockTokens) * 1e3,
            "host_load_ms_per_block": adm.loadSeconds(tier: .host, bytes: B) * 1e3,
            "disk_load_ms_per_block": adm.loadSeconds(tier: .disk, bytes: B) * 1e3,
            "disk_tier_used_llama3_8b_h100": adm.worthLoading(tier: .disk, layout: layout),
            "host_tier_used_llama3_8b_h100": adm.worthLoading(tier: .host, layout: layout),
        ]
        r.merge(Self.keys(m.codec)) { a, _ in a }
        if let p = m.placement {
            r["host_numa_node"] = p.verifiedNode ?? -1
            r["host_numa_verified"] = p.bindingVerified
            r["host_mlocked"] = p.locked
            r["host_placement_note"] = p.fallbackReason ?? ""
        }
        return r
    }

    /// The codec figures under their JSON keys.
    private static func keys(_ c: KVCodecFigures) -> [String: Any] {
        [
            "zstd_ratio_plain": c.ratioPlain,
            "zstd_ratio_codec": c.ratioCodec,
            "codec_compress_gbps": c.compressGBps,
            "codec_decompress_gbps": c.decompressGBps,
            "codec_compress_gbps_per_cpu_second": c.compressGBpsPerCPUSecond,
            "codec_decompress_gbps_per_cpu_second": c.decompressGBpsPerCPUSecond,
            "codec_raw_blocks": c.rawBlocks,
        ]
    }

    private func measureCodec(_ src: UnsafeRawBufferPointer, blockBytes: Int, layout: KVGeometry) throws -> [String: Any] {
        do { return Self.keys(try KVCodecBenchmark(repeats: repeats).measure(src, blockBytes: blockBytes, elementSize: layout.dtype.size)) }
        catch { throw CLIError("codec: \(error)") }
    }

    /// The codec on the real KV blocks of a `kvcache kv-dump` directory, as fp16 (an f32 dump is rounded
    /// to fp16 the way `kv-dump --dtype f16` does it). Only full blocks count: a partial last block's
    /// zeroed slots would flatter the ratio (unless no block is full).
    private func measureRealKV(directory: String) throws -> [String: Any] {
        let url = URL(fileURLWithPath: directory)
        guard FileManager.default.fileExists(atPath: url.appendingPathComponent("manifest.json").path) else {
            throw CLIError("\(directory) has no manifest.json (write one with kvcache kv-dump)")
        }
        let m: KVDump.Manifest
        do { m = try KVDump.readManifest(in: url) } catch { throw CLIError("\(error)") }
        let manifest = url.appendingPathComponent("manifest.json").path
        guard m.format == "kvcache-kv-dump-v1" else { throw CLIError("\(manifest): unknown KV dump format \(m.format)") }
        let layout: KVGeometry
        do { layout = try KVGeometry(layers: m.layers, kvHeads: m.kvHeads, headDim: m.headDim, dtype: .fp16, blockTokens: m.blockTokens) }
        catch { throw CLIError("\(manifest): bad KV dump shape: \(error)") }
        guard m.bytesPerBlock == layout.bytesPerBlock / 2 * m.dtype.bytes else {
            throw CLIError("\(manifest): \(m.bytesPerBlock) bytes per block, its shape gives \(layout.bytesPerBlock / 2 * m.dtype.bytes)")
        }
        let full = m.blocks.filter { $0.tokens == m.blockTokens }
        let chosen = full.isEmpty ? m.blocks : full
        guard !chosen.isEmpty else { throw CLIError("\(manifest): the KV dump has no blocks") }
        let B = layout.bytesPerBlock
        let (total, overflow) = B.multipliedReportingOverflow(by: chosen.count)
        guard !overflow, total <= 1 << 32 else { throw CLIError("\(directory): the KV dump holds more than 4 GiB of blocks (the limit here)") }
        let src = UnsafeMutableRawBufferPointer.allocate(byteCount: B * chosen.count, alignment: 4096)
        defer { src.deallocate() }
        for (i, block) in chosen.enumerated() {
            let data: [UInt8]
            do { data = try KVDump.readBlock(block.file, in: url, bytes: m.bytesPerBlock) } catch {
                throw CLIError("\(error)")   // names the block file
            }
            let out = UnsafeMutableRawBufferPointer(rebasing: src[i * B ..< (i + 1) * B])
            data.withUnsafeBytes { raw in
                switch m.dtype {
                case .f16: out.copyMemory(from: raw)
                case .f32:
                    for j in 0 ..< B / 2 {
                        let v = Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * j, as: UInt32.self)))
                        out.storeBytes(of: Float16(v).bitPattern.littleEndian, toByteOffset: 2 * j, as: UInt16.self)
                    }
                }
            }
        }
        var r = try measureCodec(UnsafeRawBufferPointer(src), blockBytes: B, layout: layout)
        if m.dtype == .f32 {
            // As the reference engine's disk tier stores its fp32 pool: each fp32 value as two 16-bit words.
            let words = try KVGeometry(layers: m.layers, kvHeads: m.kvHeads, headDim: 2 * m.headDim, dtype: .fp16,
                                     blockTokens: m.blockTokens)
            let raw = UnsafeMutableRawBufferPointer.allocate(byteCount: words.bytesPerBlock * chosen.count, alignment: 4096)
            defer { raw.deallocate() }
            for (i, block) in chosen.enumerated() {
                let data: [UInt8]
                do { data = try KVDump.readBlock(block.file, in: url, bytes: words.bytesPerBlock) } catch {
                    throw CLIError("\(error) (\(block.file) changed while it was read)")
                }
                data.withUnsafeBytes { UnsafeMutableRawBufferPointer(rebasing: raw[i * words.bytesPerBlock ..< (i + 1) * words.bytesPerBlock]).copyMemory(from: $0) }
            }
            r["engine_fp32_words"] = try measureCodec(UnsafeRawBufferPointer(raw), blockBytes: words.bytesPerBlock, layout: words)
        }
        r["dtype"] = "fp16"
        r["source_dtype"] = m.dtype.rawValue
        r["model"] = m.model
        r["blocks"] = chosen.count
        r["block_bytes"] = B
        r["prompt_tokens"] = m.promptTokens
        return r
    }
}
