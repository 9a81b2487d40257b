#ifndef OPENELM_ENGINE_KERNELS_ISA_ATTENTION_OPS_H_
#define OPENELM_ENGINE_KERNELS_ISA_ATTENTION_OPS_H_

// The Ops of the paged-attention kernel (paged_attention_impl.h) written once
// over a vector type V: scores for kLanes keys at a time (one register per
// key, summed across with V::HorizontalSums), values accumulated in four
// registers per pass. head_dim must be a multiple of V::kLanes.
#include <cstdint>

#include "engine/kernels/fast_math.h"
#include "engine/kernels/isa/elementwise_impl.h"

namespace openelm::kernels_internal {

template <class V>
struct VecAttentionOps {
  static constexpr int L = V::kLanes;
  using Reg = typename V::Reg;

  static Reg LoadT(const float* p) { return V::Load(p); }
  static Reg LoadT(const uint16_t* p) { return V::LoadBf16(p); }

  template <typename T>
  static void Scores(const float* q, const T* keys, int32_t count, int32_t n,
                     float* out) {
    for (int32_t j0 = 0; j0 < count; j0 += L) {
      const int32_t len = count - j0 < L ? count - j0 : L;
      Reg acc[L];
#pragma GCC unroll 16
      for (int j = 0; j < L; ++j) acc[j] = V::Zero();
      const T* kb = keys + static_cast<int64_t>(j0) * n;
      if (len == L) {
        for (int32_t d = 0; d < n; d += L) {
          const Reg qv = V::Load(q + d);
#pragma GCC unroll 16
          for (int j = 0; j < L; ++j) {
            acc[j] = V::Fma(qv, LoadT(kb + static_cast<int64_t>(j) * n + d), acc[j]);
          }
        }
        V::Store(out + j0, V::HorizontalSums(acc));
      } else {
        for (int32_t d = 0; d < n; d += L) {
          const Reg qv = V::Load(q + d);
          for (int j = 0; j < len; ++j) {
            acc[j] = V::Fma(qv, LoadT(kb + static_cast<int64_t>(j) * n + d), acc[j]);
          }
        }
        alignas(64) float sums[L];
        V::Store(sums, V::HorizontalSums(acc));
        for (int j = 0; j < len; ++j) out[j0 + j] = sums[j];
      }
    }
  }

  template <typename T>
  static void AccumulateValues(float* acc, const float* p, const T* values, int32_t count,
                               int32_t n) {
    for (int32_t d = 0; d < n; d += 4 * L) {
      const int32_t regs = n - d >= 4 * L ? 4 : (n - d) / L;
      Reg a0 = V::Load(acc + d);
      Reg a1 = regs > 1 ? V::Load(acc + d + L) : V::Zero();
      Reg a2 = regs > 2 ? V::Load(acc + d + 2 * L) : V::Zero();
      Reg a3 = regs > 3 ? V::Load(acc + d + 3 * L) : V::Zero();
      if (regs == 4) {
        for (int32_t j = 0; j < count; ++j) {
          const Reg pv = V::Set1(p[j]);
          const T* v = values + static_cast<int64_t>(j) * n + d;
          a0 = V::Fma(pv, LoadT(v), a0);
          a1 = V::Fma(pv, LoadT(v + L), a1);
          a2 = V::Fma(pv, LoadT(v + 2 * L), a2);
          a3 = V::Fma(pv, LoadT(v + 3 * L), a3);
        }
      } else {
        for (int32_t j = 0; j < count; ++j) {
          const Reg pv = V::Set1(p[j]);
          const T* v = values + static_cast<int64_t>(j) * n + d;
          a0 = V::Fma(pv, LoadT(v), a0);
          if (regs > 1) a1 = V::Fma(pv, LoadT(v + L), a1);
          if (regs > 2) a2 = V::Fma(pv, LoadT(v + 2 * L), a2);
        }
      }
      V::Store(acc + d, a0);
      if (regs > 1) V::Store(acc + d + L, a1);
      if (regs > 2) V::Store(acc + d + 2 * L, a2);
      if (regs > 3) V::Store(acc + d + 3 * L, a3);
    }
  }

  static float ExpAndSum(float* s, int32_t count, float mx) {
    Reg total = V::Zero();
    const Reg vmx = V::Set1(mx);
    int32_t j = 0;
    for (; j + L <= count; j += L) {
      const Reg y = VecExp<V>(V::Sub(V::Load(s + j), vmx));
      V::Store(s + j, y);
      total = V::Add(total, y);
    }
    float sum = V::ReduceAdd(total);
    for (; j < count; ++j) {
      s[j] = FastExp(s[j] - mx);
      sum += s[j];
    }
    return sum;
  }

  static void Scale(float* acc, float c, int32_t n) {
    const Reg cv = V::Set1(c);
    for (int32_t d = 0; d < n; d += L) V::Store(acc + d, V::Mul(cv, V::Load(acc + d)));
  }
};

}  // namespace openelm::kernels_internal

#endif  // OPENELM_ENGINE_KERNELS_ISA_ATTENTION_OPS_H_
