#ifndef OPENELM_ENGINE_MODEL_OPENELM_SHAPES_H_
#define OPENELM_ENGINE_MODEL_OPENELM_SHAPES_H_

#include <cstdint>
#include <vector>

// How OpenELM derives its per-layer shapes from config.json's multipliers,
// as Apple's configuration code does; shared by the config reader and the
// published size table. Internal to engine/model.
namespace openelm::shapes {

// Apple's make_divisible: `v` rounded to the nearest multiple of `divisor`,
// never below `divisor` and never more than 10% below `v`.
int64_t MakeDivisible(double v, int64_t divisor);
// round(np.linspace(lo, hi, n)[i], 2) for every i.
std::vector<double> RoundedLinspace(double lo, double hi, int32_t n);
// Query heads of each layer from qkv_multipliers (one value or [lo, hi]).
std::vector<int32_t> QueryHeadsFromMultipliers(const std::vector<double>& qkv_mult,
                                               int32_t num_layers, int32_t model_dim,
                                               int32_t head_dim, int32_t num_gqa_groups);
// The FFN intermediate size of a layer with `multiplier`.
int32_t FfnDim(double multiplier, int32_t model_dim, int32_t divisor);

}  // namespace openelm::shapes

#endif  // OPENELM_ENGINE_MODEL_OPENELM_SHAPES_H_
