#ifndef OPENELM_ENGINE_KERNELS_ISA_SIMD_PORTABLE_H_
#define OPENELM_ENGINE_KERNELS_ISA_SIMD_PORTABLE_H_

// An 8-lane "vector" of plain floats: the readable definition of every
// vector operation the kernels use, for CPUs below AVX2 (the compiler turns
// the loops into SSE2). Included by exactly one .cc (isa/kernels_portable.cc).
#include <cstdint>
#include <cstring>

#include "engine/kernels/bf16.h"

namespace openelm::kernels_internal {
namespace {

struct VecPortable {
  static constexpr int kLanes = 8;
  struct Reg {
    float v[8];
  };
  struct Raw {
    uint32_t v[8];
  };
  template <typename F>
  static Reg Map(F f) {
    Reg r;
    for (int i = 0; i < 8; ++i) r.v[i] = f(i);
    return r;
  }

  static Reg Zero() {
    return Map([](int) { return 0.0f; });
  }
  static Reg Set1(float x) {
    return Map([x](int) { return x; });
  }
  static Reg Load(const float* p) {
    return Map([p](int i) { return p[i]; });
  }
  static void Store(float* p, Reg v) { std::memcpy(p, v.v, sizeof(v.v)); }
  static Reg LoadBf16(const uint16_t* p) {
    return Map([p](int i) { return Bf16ToF32(p[i]); });
  }
  static Reg Add(Reg a, Reg b) {
    return Map([&](int i) { return a.v[i] + b.v[i]; });
  }
  static Reg Sub(Reg a, Reg b) {
    return Map([&](int i) { return a.v[i] - b.v[i]; });
  }
  static Reg Mul(Reg a, Reg b) {
    return Map([&](int i) { return a.v[i] * b.v[i]; });
  }
  static Reg Div(Reg a, Reg b) {
    return Map([&](int i) { return a.v[i] / b.v[i]; });
  }
  static Reg Max(Reg a, Reg b) {
    return Map([&](int i) { return a.v[i] > b.v[i] ? a.v[i] : b.v[i]; });
  }
  static Reg Min(Reg a, Reg b) {
    return Map([&](int i) { return a.v[i] < b.v[i] ? a.v[i] : b.v[i]; });
  }
  static Reg Fma(Reg a, Reg b, Reg c) {
    return Map([&](int i) { return a.v[i] * b.v[i] + c.v[i]; });
  }
  static Reg Fnma(Reg a, Reg b, Reg c) {
    return Map([&](int i) { return c.v[i] - a.v[i] * b.v[i]; });
  }
  static Reg Floor(Reg a) {
    return Map([&](int i) { return __builtin_floorf(a.v[i]); });
  }
  static Reg Pow2(Reg n) {
    return Map([&](int i) {
      const int32_t e = (static_cast<int32_t>(n.v[i]) + 127) << 23;
      float f;
      std::memcpy(&f, &e, sizeof(f));
      return f;
    });
  }
  static float ReduceAdd(Reg v) {
    return ((v.v[0] + v.v[4]) + (v.v[1] + v.v[5])) +
           ((v.v[2] + v.v[6]) + (v.v[3] + v.v[7]));
  }
  static void StoreBf16(uint16_t* p, Reg v) {
    for (int i = 0; i < 8; ++i) p[i] = F32ToBf16(v.v[i]);
  }
  static Raw LoadRaw(const uint32_t* p) {
    Raw r;
    std::memcpy(r.v, p, sizeof(r.v));
    return r;
  }
  static Reg RawLo(Raw r) {
    return Map([&](int i) {
      const uint32_t b = r.v[i] << 16;
      float f;
      std::memcpy(&f, &b, sizeof(f));
      return f;
    });
  }
  static Reg RawHi(Raw r) {
    return Map([&](int i) {
      const uint32_t b = r.v[i] & 0xffff0000u;
      float f;
      std::memcpy(&f, &b, sizeof(f));
      return f;
    });
  }
};

}  // namespace
}  // namespace openelm::kernels_internal

#endif  // OPENELM_ENGINE_KERNELS_ISA_SIMD_PORTABLE_H_
