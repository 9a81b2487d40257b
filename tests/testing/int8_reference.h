#ifndef OPENELM_TESTS_TESTING_INT8_REFERENCE_H_
#define OPENELM_TESTS_TESTING_INT8_REFERENCE_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "gtest/gtest.h"

namespace openelm::testing {

// Symmetric per-row int8 quantization written from its definition (the
// scheme of every int8 matmul: int8_matmul.h): scale = max|x| / 127 (1 for
// an all-zero row), q = round-to-nearest-even(x * 127 / max|x|).
inline void QuantizeRowRef(const float* x, int64_t k, std::vector<int32_t>* q,
                           double* scale) {
  double amax = 0;
  for (int64_t i = 0; i < k; ++i) amax = std::max(amax, std::fabs(double{x[i]}));
  const float famax = static_cast<float>(amax);
  *scale = famax > 0 ? famax / 127.0f : 1.0f;
  const float inv = famax > 0 ? 127.0f / famax : 0.0f;
  q->resize(k);
  for (int64_t i = 0; i < k; ++i)
    (*q)[i] = static_cast<int32_t>(std::nearbyint(x[i] * inv));
}

// Products at the ends of the int8 range: W[n, k] and A[m, k] hold +-1 and
// +-2 in per-row sign patterns, so every quantized value is +-127 (scales
// 1/127 and 2/127) and every sign combination occurs over k. A 16-bit
// intermediate sum that saturated, or a sign on the wrong operand, shows.
struct FullScaleCase {
  int64_t n, k;
  int32_t m;
  std::vector<float> w, a;

  FullScaleCase(int64_t n_, int64_t k_, int32_t m_)
      : n(n_), k(k_), m(m_), w(n * k), a(m * k) {
    for (int64_t j = 0; j < n; ++j) {
      for (int64_t c = 0; c < k; ++c) w[j * k + c] = static_cast<float>(WeightSign(j, c));
    }
    for (int32_t i = 0; i < m; ++i) {
      for (int64_t c = 0; c < k; ++c)
        a[i * k + c] = 2.0f * static_cast<float>(ActSign(i, c));
    }
  }
  static int WeightSign(int64_t j, int64_t c) {
    return ((c >> (j % 4)) + j) % 2 == 0 ? 1 : -1;
  }
  static int ActSign(int32_t i, int64_t c) {
    return i == 0 ? -1 : ((c + i) % 3 == 0 ? -1 : 1);
  }
  // dst [m, n] must be the int8 scheme's result, exactly.
  void ExpectOutput(const float* dst) const {
    for (int32_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        int64_t dot = 0;
        for (int64_t c = 0; c < k; ++c)
          dot += int64_t{127} * 127 * ActSign(i, c) * WeightSign(j, c);
        const double want = static_cast<double>(dot) * (2.0 / 127) * (1.0 / 127);
        EXPECT_NEAR(dst[i * n + j], want, 1e-5 * (1 + std::fabs(want)))
            << "row " << i << " col " << j;
      }
    }
  }
};

}  // namespace openelm::testing

#endif  // OPENELM_TESTS_TESTING_INT8_REFERENCE_H_
