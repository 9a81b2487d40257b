#ifndef OPENELM_ENGINE_KERNELS_BF16_H_
#define OPENELM_ENGINE_KERNELS_BF16_H_

#include <cstdint>
#include <cstring>

namespace openelm {

// bfloat16 stored as its 16 bit pattern. `static` so that translation units
// built with different -m flags never share one out-of-line copy.
static inline float Bf16ToF32(uint16_t v) {
  const uint32_t bits = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

// Round to nearest even; NaN stays NaN.
static inline uint16_t F32ToBf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof(bits));
  if ((bits & 0x7fffffffu) > 0x7f800000u)
    return static_cast<uint16_t>((bits >> 16) | 0x40);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

// Converts n values with the active ISA's kernel (cpu_kernels.h).
void ConvertF32ToBf16(const float* src, int64_t n, uint16_t* dst);
void ConvertBf16ToF32(const uint16_t* src, int64_t n, float* dst);

}  // namespace openelm

#endif  // OPENELM_ENGINE_KERNELS_BF16_H_
