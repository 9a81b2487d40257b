#ifndef OPENELM_TESTS_FUZZ_MICRO_CHECKPOINT_H_
#define OPENELM_TESTS_FUZZ_MICRO_CHECKPOINT_H_

// A checkpoint shape small enough that a complete, valid model.safetensors
// (about 6 KB in BF16) can sit in a seed corpus: 1 layer, model_dim 16,
// head_dim 8, 2 query and 2 KV heads, FFN 16, vocabulary 64.

#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/status/statusor.h"
#include "engine/model/openelm_config.h"

namespace openelm::testing {

// The micro config, checked by a round trip through its own config.json so
// that Checkpoint::Open (which re-reads config.json) sees the same shapes.
// Aborts if the parser rejects it (the harness would test nothing).
inline OpenElmConfig MicroConfig() {
  absl::StatusOr<OpenElmConfig> base = MakeOpenElmConfig("tiny");
  if (!base.ok()) {
    std::fprintf(stderr, "MakeOpenElmConfig(tiny): %s\n",
                 base.status().ToString().c_str());
    std::abort();
  }
  OpenElmConfig c = *base;
  c.num_layers = 1;
  c.model_dim = 16;
  c.head_dim = 8;
  c.num_gqa_groups = 1;
  c.vocab_size = 64;
  c.max_context_length = 64;
  c.ffn_dim_divisor = 16;
  c.qkv_multipliers = {1.0f, 1.0f};
  c.ffn_multipliers = {1.0f};
  c.layers = {LayerShape{.num_query_heads = 2, .num_kv_heads = 2, .ffn_dim = 16}};
  absl::StatusOr<OpenElmConfig> checked =
      OpenElmConfig::FromJson(OpenElmConfigToJson(c), "micro/config.json");
  if (!checked.ok()) {
    std::fprintf(stderr, "micro config rejected: %s\n",
                 checked.status().ToString().c_str());
    std::abort();
  }
  return *checked;
}

}  // namespace openelm::testing

#endif  // OPENELM_TESTS_FUZZ_MICRO_CHECKPOINT_H_
