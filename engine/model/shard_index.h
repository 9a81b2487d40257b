#ifndef OPENELM_ENGINE_MODEL_SHARD_INDEX_H_
#define OPENELM_ENGINE_MODEL_SHARD_INDEX_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/model/tensor.h"

namespace openelm {

// A sharded checkpoint's model.safetensors.index.json: which shard file
// holds each tensor. Read() checks the JSON and that every shard is a plain
// file name in the checkpoint directory; CheckShard() checks a shard's
// contents against the index. Errors are kInvalidArgument naming the index,
// the shard and the tensor.
struct ShardIndex {
  std::string path;
  // Shard file name -> the tensors the index puts there, in index order.
  std::map<std::string, std::vector<std::string>> tensors_by_shard;
  // Tensor name -> its shard file name.
  std::map<std::string, std::string> shard_by_tensor;

  static absl::StatusOr<ShardIndex> Read(const std::string& path);
  // `tensors` (read from `shard_path`) must be exactly the ones listed for
  // `shard`.
  absl::Status CheckShard(const std::string& shard, const std::string& shard_path,
                          const std::vector<TensorView>& tensors) const;
};

}  // namespace openelm

#endif  // OPENELM_ENGINE_MODEL_SHARD_INDEX_H_
