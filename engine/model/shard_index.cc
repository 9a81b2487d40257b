#include "engine/model/shard_index.h"

#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "engine/base/file_util.h"
#include "engine/base/json.h"
#include "engine/base/status_macros.h"

namespace openelm {

absl::StatusOr<ShardIndex> ShardIndex::Read(const std::string& path) {
  ShardIndex index;
  index.path = path;
  OPENELM_ASSIGN_OR_RETURN(std::string text, ReadSmallFile(path));
  absl::StatusOr<nlohmann::json> json = ParseJson(text);
  if (!json.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("index '", path, "' is not valid JSON: ", json.status().message()));
  }
  const nlohmann::json* weight_map = JsonFind(*json, "weight_map");
  if (weight_map == nullptr || !weight_map->is_object() || weight_map->empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "index '", path, "' has no weight_map object of tensor names to shard files"));
  }
  for (const auto& [name, shard] : weight_map->items()) {
    const std::string* file =
        shard.is_string() ? shard.get_ptr<const std::string*>() : nullptr;
    if (file == nullptr || file->empty() || absl::StrContains(*file, "/") ||
        (*file)[0] == '.') {
      return absl::InvalidArgumentError(absl::StrCat(
          "index '", path, "' maps tensor '", name, "' to an invalid shard name ",
          JsonDump(shard), " (must be a file name in the checkpoint directory)"));
    }
    index.tensors_by_shard[*file].push_back(name);
    index.shard_by_tensor[name] = *file;
  }
  return index;
}

absl::Status ShardIndex::CheckShard(const std::string& shard,
                                    const std::string& shard_path,
                                    const std::vector<TensorView>& tensors) const {
  std::set<std::string> in_shard;
  for (const TensorView& t : tensors) {
    auto listed = shard_by_tensor.find(t.name);
    if (listed == shard_by_tensor.end() || listed->second != shard) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor '", t.name, "' in shard '", shard_path,
          "' is not listed for that shard in '", path, "'",
          listed == shard_by_tensor.end()
              ? ""
              : absl::StrCat(" (listed in ", JsonDump(nlohmann::json(listed->second)),
                             ")")));
    }
    in_shard.insert(t.name);
  }
  auto names = tensors_by_shard.find(shard);
  if (names == tensors_by_shard.end()) return absl::OkStatus();
  for (const std::string& name : names->second) {
    if (in_shard.count(name) == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor '", name, "' is listed in '", path, "' for shard '", shard,
                       "' but that shard does not contain it"));
    }
  }
  return absl::OkStatus();
}

}  // namespace openelm
