#ifndef OPENELM_TESTS_TESTING_INT8_REFERENCE_H_
#define OPENELM_TESTS_TESTING_INT8_REFERENCE_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

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

}  // namespace openelm::testing

#endif  // OPENELM_TESTS_TESTING_INT8_REFERENCE_H_
