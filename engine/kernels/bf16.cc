#include "engine/kernels/bf16.h"

#include "engine/kernels/cpu_kernels.h"

namespace openelm {

void ConvertF32ToBf16(const float* src, int64_t n, uint16_t* dst) {
  ActiveKernels().f32_to_bf16(src, n, dst);
}

void ConvertBf16ToF32(const uint16_t* src, int64_t n, float* dst) {
  ActiveKernels().bf16_to_f32(src, n, dst);
}

}  // namespace openelm
