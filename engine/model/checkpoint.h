#ifndef OPENELM_ENGINE_MODEL_CHECKPOINT_H_
#define OPENELM_ENGINE_MODEL_CHECKPOINT_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/model/openelm_config.h"
#include "engine/model/safetensors_file.h"
#include "engine/model/tensor.h"

namespace openelm {

// An opened Hugging Face OpenELM checkpoint directory: config.json plus
// model.safetensors, or model-0000N-of-0000M.safetensors with
// model.safetensors.index.json. Files are mmapped read-only; tensors are
// zero-copy views. Open() validates everything (headers, offsets, overlaps,
// byte sizes, the exact tensor set and every shape against the config); each
// error names the file and tensor. Errors are kInvalidArgument, or kNotFound
// for a missing config.json, weight file or shard. When both
// model.safetensors and an index are present, the single file is used.
//
// Thread-compatible; immutable after Open().
class Checkpoint {
 public:
  static absl::StatusOr<std::unique_ptr<Checkpoint>> Open(const std::string& dir);
  ~Checkpoint();
  Checkpoint(const Checkpoint&) = delete;
  Checkpoint& operator=(const Checkpoint&) = delete;

  const OpenElmConfig& config() const { return config_; }
  const std::string& dir() const { return dir_; }
  // All tensors, sorted by name.
  const std::vector<TensorView>& tensors() const { return tensors_; }
  // nullptr if absent.
  const TensorView* Find(absl::string_view name) const;
  int64_t total_tensor_bytes() const;
  int64_t total_parameters() const;  // sum of tensor elements

 private:
  Checkpoint() = default;
  std::string dir_;
  OpenElmConfig config_;
  std::vector<TensorView> tensors_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;  // the views' mappings
};

// The exact tensor set of `config`, each with the shape it implies: every
// unexpected, missing or misshapen tensor is kInvalidArgument naming it and
// its file (and, for per-layer projections, the config.json values that
// disagree). `dir` is for the message about a missing tensor.
absl::Status CheckTensorsMatchConfig(const OpenElmConfig& config, const std::string& dir,
                                     const std::map<std::string, TensorView>& by_name);

// Names of the 8L+2 tensors of `config`, each with its expected shape.
std::vector<std::pair<std::string, std::vector<int64_t>>> ExpectedTensors(
    const OpenElmConfig& config);

// Writes a random-weight checkpoint in the exact HF layout into `dir`
// (created if missing): config.json and model.safetensors, or, when
// `num_shards` > 1, model-0000N-of-0000M.safetensors plus the index. Weights
// are normal(0, 0.02), norm weights 1 + normal(0, 0.02), from our own PRNG
// (splitmix64 + Box-Muller), so the output is deterministic: same (config,
// seed, dtype, num_shards) -> same bytes, whatever the thread count. A
// tensor's values depend only on (seed, tensor name), so single-file and
// sharded checkpoints hold equal tensors, and the dtypes differ only by
// rounding. Headers have sorted keys; data starts 8-byte aligned.
absl::Status WriteRandomCheckpoint(const OpenElmConfig& config, uint64_t seed,
                                   DType dtype, int32_t num_shards,
                                   const std::string& dir);

}  // namespace openelm

#endif  // OPENELM_ENGINE_MODEL_CHECKPOINT_H_
