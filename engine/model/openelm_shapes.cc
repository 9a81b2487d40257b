#include "engine/model/openelm_shapes.h"

#include <algorithm>
#include <cmath>

namespace openelm::shapes {

// Apple's make_divisible (from the TF MobileNet code): round `v` to the
// nearest multiple of `divisor`, never below `divisor` and never more than
// 10% below `v`.
int64_t MakeDivisible(double v, int64_t divisor) {
  const double half = static_cast<double>(divisor) / 2.0;
  int64_t rounded = static_cast<int64_t>(v + half) / divisor * divisor;
  rounded = std::max(divisor, rounded);
  if (static_cast<double>(rounded) < 0.9 * v) rounded += divisor;
  return rounded;
}

// numpy's round(x, 2) for float64: rint(x * 100) / 100 (ties to even).
namespace {

double Round2(double x) { return std::nearbyint(x * 100.0) / 100.0; }

}  // namespace

// round(np.linspace(lo, hi, n)[i], 2) for every i, as Apple's config does.
std::vector<double> RoundedLinspace(double lo, double hi, int32_t n) {
  std::vector<double> out(n);
  if (n == 1) {
    out[0] = Round2(lo);
    return out;
  }
  const double step = (hi - lo) / static_cast<double>(n - 1);
  for (int32_t i = 0; i < n; ++i) {
    out[i] = Round2(i == n - 1 ? hi : static_cast<double>(i) * step + lo);
  }
  return out;
}

// Query heads of each layer as Apple derives them from qkv_multipliers.
std::vector<int32_t> QueryHeadsFromMultipliers(const std::vector<double>& qkv_mult,
                                               int32_t num_layers, int32_t model_dim,
                                               int32_t head_dim, int32_t num_gqa_groups) {
  std::vector<double> per_layer =
      qkv_mult.size() == 1 ? std::vector<double>(num_layers, qkv_mult[0])
                           : RoundedLinspace(qkv_mult[0], qkv_mult[1], num_layers);
  std::vector<int32_t> heads(num_layers);
  for (int32_t i = 0; i < num_layers; ++i) {
    const int64_t q_dim = MakeDivisible(model_dim * per_layer[i],
                                        static_cast<int64_t>(head_dim) * num_gqa_groups);
    heads[i] = static_cast<int32_t>(q_dim / head_dim);
  }
  return heads;
}

int32_t FfnDim(double multiplier, int32_t model_dim, int32_t divisor) {
  return static_cast<int32_t>(MakeDivisible(multiplier * model_dim, divisor));
}

}  // namespace openelm::shapes
