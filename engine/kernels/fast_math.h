#ifndef OPENELM_ENGINE_KERNELS_FAST_MATH_H_
#define OPENELM_ENGINE_KERNELS_FAST_MATH_H_

#include <cstdint>
#include <cstring>

namespace openelm {

// exp(x) for float, written so the compiler can vectorise loops calling it.
// Cody-Waite range reduction + degree-6 polynomial; relative error about
// 2e-7 over the whole range; x < -87.3 gives 0 and x > 88.7 gives +inf.
// `static`: each translation unit keeps its own copy (they are built with
// different -m flags).
static inline float FastExp(float x) {
  x = x < -87.3f ? -87.3f : x;
  x = x > 88.7f ? 88.7f : x;
  const float n = __builtin_floorf(x * 1.44269504088896341f + 0.5f);
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t e = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &e, sizeof(scale));
  return p * scale;
}

}  // namespace openelm

#endif  // OPENELM_ENGINE_KERNELS_FAST_MATH_H_
