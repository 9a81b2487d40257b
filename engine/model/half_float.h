#ifndef OPENELM_ENGINE_MODEL_HALF_FLOAT_H_
#define OPENELM_ENGINE_MODEL_HALF_FLOAT_H_

// Scalar conversions between f32 and the two 16-bit formats of safetensors
// checkpoints (bits held in uint16_t). All rounding is to nearest, ties to
// even; NaN stays NaN (quiet), infinities stay infinite.

#include <cmath>
#include <cstdint>
#include <cstring>

namespace openelm {

inline uint32_t FloatBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
}

inline float BitsToFloat(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

inline float BF16ToF32(uint16_t h) { return BitsToFloat(static_cast<uint32_t>(h) << 16); }

inline uint16_t F32ToBF16(float f) {
  const uint32_t u = FloatBits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) {
    return static_cast<uint16_t>((u >> 16) | 0x0040u);  // quiet NaN, sign kept
  }
  // Adding 0x7fff plus the lowest kept bit rounds half to even; a carry out of
  // the mantissa correctly bumps the exponent (up to infinity).
  const uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>((u + rounding) >> 16);
}

// IEEE binary16 -> f32, including subnormals, infinities and NaN.
inline float F16ToF32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu;
  uint32_t mantissa = h & 0x3ffu;
  if (exponent == 0x1f) return BitsToFloat(sign | 0x7f800000u | (mantissa << 13));
  if (exponent != 0)
    return BitsToFloat(sign | ((exponent + 112) << 23) | (mantissa << 13));
  if (mantissa == 0) return BitsToFloat(sign);  // signed zero
  // Subnormal: mantissa * 2^-24. Shift until the implicit bit appears; every
  // shift lowers the f32 exponent by one (2^-14 has biased f32 exponent 113).
  uint32_t f32_exponent = 113;
  while ((mantissa & 0x400u) == 0) {
    mantissa <<= 1;
    --f32_exponent;
  }
  return BitsToFloat(sign | (f32_exponent << 23) | ((mantissa & 0x3ffu) << 13));
}

inline uint16_t F32ToF16(float f) {
  const uint32_t u = FloatBits(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t magnitude = u & 0x7fffffffu;
  if (magnitude > 0x7f800000u) return sign | 0x7e00u;   // NaN
  if (magnitude >= 0x477ff000u) return sign | 0x7c00u;  // >= 65520 rounds to inf
  if (magnitude < 0x38800000u) {                        // below 2^-14: subnormal
    // Exact scaling by 2^24, then round half to even to an integer in [0, 1024]
    // (1024 is the encoding of the smallest normal, 2^-14).
    const float scaled = BitsToFloat(magnitude) * 16777216.0f;
    return sign | static_cast<uint16_t>(std::nearbyint(scaled));
  }
  const uint32_t mantissa = magnitude & 0x7fffffu;
  uint32_t h = (((magnitude >> 23) - 112) << 10) | (mantissa >> 13);
  const uint32_t rest = mantissa & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u) != 0))
    ++h;  // may carry into exponent
  return sign | static_cast<uint16_t>(h);
}

}  // namespace openelm

#endif  // OPENELM_ENGINE_MODEL_HALF_FLOAT_H_
