import CKernels
import Foundation
import KVPlan

/// Moves keys cached after RoPE from positions p to p + delta (PIE): each rotated pair turns by
/// `delta x theta_i`, since rotations compose (R(delta) R(p) = R(p + delta)). Exact up to fp32 rounding
/// for any delta, negative included; values are never rotated.
///
/// One call computes the `dims / 2` cosines and sines of the shift in Double (on the stack) and runs the
/// C kernel (`kv_rope_rotate_*`: AVX2+FMA where the CPU has it, portable C elsewhere) over the vectors in
/// place: O(vectors x dims), no heap allocation, safe on several threads over disjoint memory.
public struct RopeRotator: Sendable {
    public let spec: RopeSpec
    private let layout: KVRopeLayout

    public init(spec: RopeSpec) {
        self.spec = spec
        layout = spec.layout == .adjacentPairs ? KVRopeAdjacentPairs : KVRopeHalfSplit
    }

    /// Rotates `count` fp32 vectors (one head of one token each), `stride` floats apart, by `delta`
    /// positions. A block-layer of keys laid out `[token][kvHead][headDim]` is `tokens x kvHeads` vectors
    /// of stride `headDim`.
    /// - Precondition: `stride >= spec.dims`.
    public func rotate(_ vectors: UnsafeMutablePointer<Float>, count: Int, stride: Int, by delta: Int,
                       portable: Bool = false) {
        precondition(stride >= spec.dims, "stride below the rotated dims")
        guard count > 0, delta != 0 else { return }
        withAngles(delta) { c, s in
            if portable {
                kv_rope_rotate_f32_portable(vectors, count, stride, spec.dims, layout, c, s)
            } else {
                kv_rope_rotate_f32(vectors, count, stride, spec.dims, layout, c, s)
            }
        }
    }

    /// `rotate` on 16-bit elements (`.fp16` IEEE half or `.bf16`): widened to fp32 per vector, rotated and
    /// rounded to nearest even. Other element types are not rotated (fp8 is not supported yet).
    /// - Precondition: `dtype` is `.fp16` or `.bf16`, `stride >= spec.dims`.
    public func rotate(_ vectors: UnsafeMutablePointer<UInt16>, dtype: KVDType, count: Int, stride: Int, by delta: Int) {
        precondition(dtype == .fp16 || dtype == .bf16, "16-bit rotation takes fp16 or bf16")
        precondition(stride >= spec.dims, "stride below the rotated dims")
        guard count > 0, delta != 0 else { return }
        withAngles(delta) { c, s in
            if dtype == .fp16 {
                kv_rope_rotate_f16(vectors, count, stride, spec.dims, layout, c, s)
            } else {
                kv_rope_rotate_bf16(vectors, count, stride, spec.dims, layout, c, s)
            }
        }
    }

    /// The cosines and sines of `delta x theta_i` for each pair, rounded to Float from Double angles (as the
    /// reference engine rounds its own), in a stack buffer for the duration of `body`.
    @inline(__always)
    private func withAngles(_ delta: Int, _ body: (UnsafePointer<Float>, UnsafePointer<Float>) -> Void) {
        let pairs = spec.pairs
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 2 * pairs) { buf in
            let base = buf.baseAddress!
            for i in 0 ..< pairs {
                let angle = Double(delta) * spec.inverseFrequency(i)
                base[i] = Float(cos(angle))
                base[pairs + i] = Float(sin(angle))
            }
            body(UnsafePointer(base), UnsafePointer(base + pairs))
        }
    }
}
