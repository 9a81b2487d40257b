#ifndef OPENELM_ENGINE_KERNELS_ISA_INT8_OPS_PORTABLE_H_
#define OPENELM_ENGINE_KERNELS_ISA_INT8_OPS_PORTABLE_H_

// The readable definition of the int8 ops (isa/int8_ops_avx2.h has the
// contract): plain loops over a 32-byte chunk. Included by
// isa/kernels_portable.cc only.
#include <cstdint>
#include <cstring>

namespace openelm::kernels_internal {
namespace {

struct I8Portable {
  static constexpr int kChunk = 32;
  struct Reg {
    int32_t lane[8];
    int8_t bytes[32];
  };

  static Reg Zero() {
    Reg r;
    std::memset(&r, 0, sizeof(r));
    return r;
  }
  static Reg Load(const int8_t* p) {
    Reg r;
    std::memset(r.lane, 0, sizeof(r.lane));
    std::memcpy(r.bytes, p, 32);
    return r;
  }
  static Reg Abs(Reg a) { return a; }  // Dot works on signed bytes directly
  static Reg Dot(Reg acc, Reg /*abs_a*/, Reg a, Reg w) {
    for (int i = 0; i < 32; ++i)
      acc.lane[i / 4] += int32_t{a.bytes[i]} * int32_t{w.bytes[i]};
    return acc;
  }
  static int32_t Reduce(Reg v) {
    int32_t s = 0;
    for (int i = 0; i < 8; ++i) s += v.lane[i];
    return s;
  }
  static void QuantizeRow(const float* x, int64_t k, int64_t kp, int8_t* q,
                          float* scale) {
    float amax = 0.0f;
    for (int64_t i = 0; i < k; ++i)
      amax = x[i] > amax ? x[i] : (-x[i] > amax ? -x[i] : amax);
    *scale = amax > 0.0f ? amax / 127.0f : 1.0f;
    const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
    for (int64_t i = 0; i < k; ++i)
      q[i] = static_cast<int8_t>(__builtin_nearbyintf(x[i] * inv));
    for (int64_t i = k; i < kp; ++i) q[i] = 0;
  }
};

}  // namespace
}  // namespace openelm::kernels_internal

#endif  // OPENELM_ENGINE_KERNELS_ISA_INT8_OPS_PORTABLE_H_
