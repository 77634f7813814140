// Which implementation the dispatching kernels use on this CPU.

#include "CKernels.h"
#include "CPUFeatures.h"

KVKernelsISA kv_kernels_isa(void) {
    return kv_cpu_has_avx2_fma() ? KVKernelsISAAVX2FMA : KVKernelsISAPortable;
}
