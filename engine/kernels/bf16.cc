#include "engine/kernels/bf16.h"

namespace openelm {

// target_clones builds an AVX-512 and a baseline copy and picks one at load
// time from the CPU's features, so the binary runs on any x86-64.
__attribute__((target_clones("avx512f", "default")))
void ConvertF32ToBf16(const float* src, int64_t n, uint16_t* dst) {
  for (int64_t i = 0; i < n; ++i) {
    uint32_t bits;
    std::memcpy(&bits, &src[i], sizeof(bits));
    const bool nan = (bits & 0x7fffffffu) > 0x7f800000u;
    const uint32_t rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
    dst[i] = static_cast<uint16_t>(nan ? ((bits >> 16) | 0x40u) : rounded);
  }
}

__attribute__((target_clones("avx512f", "default")))
void ConvertBf16ToF32(const uint16_t* src, int64_t n, float* dst) {
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t bits = static_cast<uint32_t>(src[i]) << 16;
    std::memcpy(&dst[i], &bits, sizeof(float));
  }
}

}  // namespace openelm
