#ifndef OPENELM_TESTS_ENGINE_NUMERICS_REFERENCE_GOLDEN_FILE_H_
#define OPENELM_TESTS_ENGINE_NUMERICS_REFERENCE_GOLDEN_FILE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/base/types.h"
#include "engine/model/openelm_config.h"
#include "tests/engine/numerics/reference/openelm_reference.h"

namespace openelm::testing {

// Logits the scalar reference produced for a prompt, frozen in a small text
// file (tests/data/golden/*.golden) so that any later change to the
// reference's numbers is caught. The weights come from SyntheticWeights()
// below (a counter-based hash, defined here), not from the checkpoint
// generator, and the layer shapes are stored in the file: the golden depends
// on nothing but the reference. To stay small it keeps, per position, every
// `stride`-th logit plus the argmax over the whole vocabulary.
//
// File format (text, one item per line):
//   OPENELM_REFERENCE_GOLDEN <version=1>
//   seed <seed>
//   shape <num_layers> <model_dim> <head_dim> <vocab_size>
//   layer <num_query_heads> <num_kv_heads> <ffn_dim>      (num_layers lines)
//   tokens <n> <id> ... <id>
//   stride <stride>
//   then per position t: "position <t> argmax <id>" and one line of
//   vocab_size / stride (rounded up) values, printed with %.9g.
struct GoldenLogits {
  static constexpr int32_t kVersion = 1;
  uint64_t seed = 0;
  int32_t model_dim = 0;
  int32_t head_dim = 0;
  int32_t vocab_size = 0;
  std::vector<LayerShape> layers;
  std::vector<TokenId> tokens;
  int32_t stride = 1;
  std::vector<TokenId> argmax;  // per position
  std::vector<std::vector<float>>
      sampled;  // per position: logits[0], logits[stride], ...
};

std::string SerializeGolden(const GoldenLogits& golden);
// kInvalidArgument naming the line on any malformed or inconsistent content.
absl::StatusOr<GoldenLogits> ParseGolden(const std::string& text);

// Deterministic weights for `config` (its shape fields and `layers` only):
// matrices uniform with standard deviation 0.02, norm weights 1 +/- that.
// Element i of tensor number k is a pure function of (seed, k, i).
ReferenceWeights SyntheticWeights(const OpenElmConfig& config, uint64_t seed);

// Runs the reference with SyntheticWeights(seed) for the shape in `spec`
// (seed, model_dim, head_dim, vocab_size, layers) on spec.tokens and fills in
// argmax and sampled.
absl::StatusOr<GoldenLogits> ComputeGolden(GoldenLogits spec);

}  // namespace openelm::testing

#endif  // OPENELM_TESTS_ENGINE_NUMERICS_REFERENCE_GOLDEN_FILE_H_
