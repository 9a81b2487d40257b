#ifndef OPENELM_TESTS_TESTING_RANDOM_VECTORS_H_
#define OPENELM_TESTS_TESTING_RANDOM_VECTORS_H_

#include <cstdint>
#include <random>
#include <vector>

namespace openelm::testing {

// n normal(0, stddev) floats from a seeded mt19937: the inputs of the kernel
// tests (the same seed gives the same vector on every host).
inline std::vector<float> RandomVector(int64_t n, uint32_t seed, float stddev = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, stddev);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

}  // namespace openelm::testing

#endif  // OPENELM_TESTS_TESTING_RANDOM_VECTORS_H_
