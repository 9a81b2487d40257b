#ifndef OPENELM_ENGINE_KERNELS_ISA_ELEMENTWISE_IMPL_H_
#define OPENELM_ENGINE_KERNELS_ISA_ELEMENTWISE_IMPL_H_

// Row kernels written once over a vector type V (isa/simd_*.h) and built per
// ISA by isa/kernels_*.cc. Templates only: every instantiation names a V from
// an unnamed namespace, so builds with different -m flags never share code.
#include <cstdint>

#include "engine/kernels/bf16.h"
#include "engine/kernels/fast_math.h"

namespace openelm::kernels_internal {

// exp(x) lane by lane: FastExp's range reduction and polynomial.
template <class V>
typename V::Reg VecExp(typename V::Reg x) {
  x = V::Max(x, V::Set1(-87.3f));
  x = V::Min(x, V::Set1(88.7f));
  const typename V::Reg n =
      V::Floor(V::Fma(x, V::Set1(1.44269504088896341f), V::Set1(0.5f)));
  typename V::Reg r = V::Fnma(n, V::Set1(0.693359375f), x);
  r = V::Fnma(n, V::Set1(-2.12194440e-4f), r);
  typename V::Reg p = V::Set1(1.9875691500e-4f);
  p = V::Fma(p, r, V::Set1(1.3981999507e-3f));
  p = V::Fma(p, r, V::Set1(8.3334519073e-3f));
  p = V::Fma(p, r, V::Set1(4.1665795894e-2f));
  p = V::Fma(p, r, V::Set1(1.6666665459e-1f));
  p = V::Fma(p, r, V::Set1(5.0000001201e-1f));
  p = V::Fma(V::Mul(p, r), r, V::Add(r, V::Set1(1.0f)));
  return V::Mul(p, V::Pow2(n));
}

template <class V>
void RmsNormRow(const float* x, const float* w, int32_t n, float eps, float* out) {
  constexpr int L = V::kLanes;
  typename V::Reg a0 = V::Zero(), a1 = V::Zero();
  int32_t i = 0;
  for (; i + 2 * L <= n; i += 2 * L) {
    const typename V::Reg x0 = V::Load(x + i), x1 = V::Load(x + i + L);
    a0 = V::Fma(x0, x0, a0);
    a1 = V::Fma(x1, x1, a1);
  }
  for (; i + L <= n; i += L) {
    const typename V::Reg x0 = V::Load(x + i);
    a0 = V::Fma(x0, x0, a0);
  }
  float sum = V::ReduceAdd(V::Add(a0, a1));
  for (; i < n; ++i) sum += x[i] * x[i];
  const float inv = 1.0f / __builtin_sqrtf(sum / static_cast<float>(n) + eps);
  const typename V::Reg vinv = V::Set1(inv);
  i = 0;
  for (; i + L <= n; i += L)
    V::Store(out + i, V::Mul(V::Mul(V::Load(x + i), vinv), V::Load(w + i)));
  for (; i < n; ++i) out[i] = x[i] * inv * w[i];
}

template <class V>
void RopeRotateHead(float* v, const float* c, const float* s, int32_t half) {
  constexpr int L = V::kLanes;
  int32_t j = 0;
  for (; j + L <= half; j += L) {
    const typename V::Reg a = V::Load(v + j), b = V::Load(v + j + half);
    const typename V::Reg cv = V::Load(c + j), sv = V::Load(s + j);
    V::Store(v + j, V::Fnma(b, sv, V::Mul(a, cv)));
    V::Store(v + j + half, V::Fma(a, sv, V::Mul(b, cv)));
  }
  for (; j < half; ++j) {
    const float a = v[j], b = v[j + half];
    v[j] = a * c[j] - b * s[j];
    v[j + half] = b * c[j] + a * s[j];
  }
}

template <class V>
void SwiGluRow(const float* gate, const float* up, int32_t n, float* out) {
  constexpr int L = V::kLanes;
  const typename V::Reg one = V::Set1(1.0f);
  int32_t i = 0;
  for (; i + L <= n; i += L) {
    const typename V::Reg g = V::Load(gate + i);
    const typename V::Reg e = VecExp<V>(V::Sub(V::Zero(), g));
    V::Store(out + i, V::Mul(V::Div(g, V::Add(one, e)), V::Load(up + i)));
  }
  for (; i < n; ++i) out[i] = gate[i] / (1.0f + FastExp(-gate[i])) * up[i];
}

template <class V>
void AddRow(const float* x, int64_t n, float* y) {
  constexpr int L = V::kLanes;
  int64_t i = 0;
  for (; i + L <= n; i += L) V::Store(y + i, V::Add(V::Load(y + i), V::Load(x + i)));
  for (; i < n; ++i) y[i] += x[i];
}

template <class V>
void F32ToBf16Row(const float* src, int64_t n, uint16_t* dst) {
  constexpr int L = V::kLanes;
  int64_t i = 0;
  for (; i + L <= n; i += L) V::StoreBf16(dst + i, V::Load(src + i));
  for (; i < n; ++i) dst[i] = F32ToBf16(src[i]);
}

template <class V>
void Bf16ToF32Row(const uint16_t* src, int64_t n, float* dst) {
  constexpr int L = V::kLanes;
  int64_t i = 0;
  for (; i + L <= n; i += L) V::Store(dst + i, V::LoadBf16(src + i));
  for (; i < n; ++i) dst[i] = Bf16ToF32(src[i]);
}

}  // namespace openelm::kernels_internal

#endif  // OPENELM_ENGINE_KERNELS_ISA_ELEMENTWISE_IMPL_H_
