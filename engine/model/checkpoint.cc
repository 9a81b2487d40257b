#include "engine/model/checkpoint.h"

#include <algorithm>
#include <map>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "engine/base/file_util.h"
#include "engine/base/status_macros.h"
#include "engine/model/safetensors_file.h"
#include "engine/model/shard_index.h"

namespace openelm {
namespace {

constexpr char kSingleFile[] = "model.safetensors";
constexpr char kIndexFile[] = "model.safetensors.index.json";

// Which part of which layer a tensor name refers to.
struct LayerTensorName {
  int32_t layer = -1;
  std::string suffix;  // e.g. "attn.qkv_proj.weight"
};

LayerTensorName SplitLayerName(absl::string_view name) {
  constexpr absl::string_view kPrefix = "transformer.layers.";
  LayerTensorName out;
  if (!absl::StartsWith(name, kPrefix)) return out;
  name.remove_prefix(kPrefix.size());
  const size_t dot = name.find('.');
  int32_t layer = 0;
  if (dot == absl::string_view::npos || !absl::SimpleAtoi(name.substr(0, dot), &layer)) {
    return out;
  }
  out.layer = layer;
  out.suffix = std::string(name.substr(dot + 1));
  return out;
}

// For a per-layer projection whose size follows the config's per-layer head
// or FFN lists, explains the disagreement; empty when it is another kind of
// shape error.
std::string ExplainConfigMismatch(const OpenElmConfig& c, const std::string& name,
                                  const std::vector<int64_t>& got,
                                  const std::vector<int64_t>& want) {
  const LayerTensorName ln = SplitLayerName(name);
  if (ln.layer < 0 || ln.layer >= c.num_layers || got.size() != 2 || want.size() != 2)
    return "";
  const LayerShape& l = c.layers[ln.layer];
  const int64_t d = c.model_dim;
  const std::string where =
      absl::StrCat("config.json layer ", ln.layer, " (num_query_heads ",
                   l.num_query_heads, ", num_kv_heads ", l.num_kv_heads, ", head_dim ",
                   c.head_dim, ", ffn_dim ", l.ffn_dim, ")");
  if (ln.suffix == "attn.qkv_proj.weight" && got[1] == d && got[0] != want[0]) {
    return absl::StrCat("has ", got[0], " rows but ", where,
                        " needs (q + 2 * kv) * head_dim = ", want[0]);
  }
  if (ln.suffix == "attn.out_proj.weight" && got[0] == d && got[1] != want[1]) {
    return absl::StrCat("has ", got[1], " columns but ", where,
                        " needs q * head_dim = ", want[1]);
  }
  if (ln.suffix == "ffn.proj_1.weight" && got[1] == d && got[0] != want[0]) {
    return absl::StrCat("has ", got[0], " rows but ", where,
                        " needs 2 * ffn_dim = ", want[0]);
  }
  if (ln.suffix == "ffn.proj_2.weight" && got[0] == d && got[1] != want[1]) {
    return absl::StrCat("has ", got[1], " columns but ", where,
                        " needs ffn_dim = ", want[1]);
  }
  return "";
}

}  // namespace

Checkpoint::~Checkpoint() = default;

std::vector<std::pair<std::string, std::vector<int64_t>>> ExpectedTensors(
    const OpenElmConfig& c) {
  const int64_t d = c.model_dim;
  const int64_t hd = c.head_dim;
  std::vector<std::pair<std::string, std::vector<int64_t>>> out;
  out.push_back({"transformer.token_embeddings.weight", {c.vocab_size, d}});
  for (int32_t i = 0; i < c.num_layers; ++i) {
    const LayerShape& l = c.layers[i];
    const std::string p = absl::StrCat("transformer.layers.", i, ".");
    const int64_t q = l.num_query_heads;
    const int64_t kv = l.num_kv_heads;
    out.push_back({p + "attn_norm.weight", {d}});
    out.push_back({p + "attn.qkv_proj.weight", {(q + 2 * kv) * hd, d}});
    out.push_back({p + "attn.q_norm.weight", {hd}});
    out.push_back({p + "attn.k_norm.weight", {hd}});
    out.push_back({p + "attn.out_proj.weight", {d, q * hd}});
    out.push_back({p + "ffn_norm.weight", {d}});
    out.push_back({p + "ffn.proj_1.weight", {2 * int64_t{l.ffn_dim}, d}});
    out.push_back({p + "ffn.proj_2.weight", {d, l.ffn_dim}});
  }
  out.push_back({"transformer.norm.weight", {d}});
  return out;
}

absl::StatusOr<std::unique_ptr<Checkpoint>> Checkpoint::Open(const std::string& dir) {
  std::unique_ptr<Checkpoint> ckpt(new Checkpoint());
  ckpt->dir_ = dir;
  const std::string config_path = JoinPath(dir, "config.json");
  if (!FileExists(config_path)) {
    return absl::NotFoundError(absl::StrCat("checkpoint '", dir, "' has no config.json"));
  }
  OPENELM_ASSIGN_OR_RETURN(ckpt->config_, OpenElmConfig::FromFile(config_path));

  // Tensors of every file, with the file that holds each (for duplicates).
  std::map<std::string, TensorView> by_name;
  const auto add_file = [&](std::unique_ptr<SafetensorsFile> file) -> absl::Status {
    for (const TensorView& t : file->tensors()) {
      auto [it, inserted] = by_name.emplace(t.name, t);
      if (!inserted) {
        return absl::InvalidArgumentError(
            absl::StrCat("tensor '", t.name, "' appears in both '", it->second.file,
                         "' and '", t.file, "'"));
      }
    }
    ckpt->files_.push_back(std::move(file));
    return absl::OkStatus();
  };

  // Like Hugging Face, a single model.safetensors wins over an index.
  const std::string single_path = JoinPath(dir, kSingleFile);
  const std::string index_path = JoinPath(dir, kIndexFile);
  if (FileExists(single_path)) {
    OPENELM_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file,
                             SafetensorsFile::Open(single_path));
    OPENELM_RETURN_IF_ERROR(add_file(std::move(file)));
  } else if (FileExists(index_path)) {
    OPENELM_ASSIGN_OR_RETURN(ShardIndex index, ShardIndex::Read(index_path));
    for (const auto& [shard, names] : index.tensors_by_shard) {
      const std::string shard_path = JoinPath(dir, shard);
      if (!FileExists(shard_path)) {
        return absl::NotFoundError(absl::StrCat("index '", index_path, "' maps tensor '",
                                                names.front(), "' to shard '", shard,
                                                "', which does not exist"));
      }
      OPENELM_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file,
                               SafetensorsFile::Open(shard_path));
      OPENELM_RETURN_IF_ERROR(index.CheckShard(shard, shard_path, file->tensors()));
      OPENELM_RETURN_IF_ERROR(add_file(std::move(file)));
    }
  } else {
    return absl::NotFoundError(absl::StrCat("checkpoint '", dir, "' has neither ",
                                            kSingleFile, " nor ", kIndexFile));
  }
  OPENELM_RETURN_IF_ERROR(CheckTensorsMatchConfig(ckpt->config_, dir, by_name));
  for (auto& [name, t] : by_name) ckpt->tensors_.push_back(std::move(t));
  return ckpt;
}

absl::Status CheckTensorsMatchConfig(const OpenElmConfig& config, const std::string& dir,
                                     const std::map<std::string, TensorView>& by_name) {
  std::map<std::string, std::vector<int64_t>> expected;
  for (auto& [name, shape] : ExpectedTensors(config)) expected[name] = std::move(shape);
  for (const auto& [name, t] : by_name) {
    auto it = expected.find(name);
    if (it == expected.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("unexpected tensor '", name, "' in '", t.file,
                       "': not part of an OpenELM model with this config.json"));
    }
    if (t.shape != it->second) {
      const std::string why = ExplainConfigMismatch(config, name, t.shape, it->second);
      if (!why.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("tensor '", name, "' in '", t.file,
                         "' does not match config.json: it ", why));
      }
      return absl::InvalidArgumentError(
          absl::StrCat("tensor '", name, "' in '", t.file, "' has shape ",
                       ShapeString(t.shape), ", expected ", ShapeString(it->second)));
    }
  }
  for (const auto& [name, shape] : expected) {
    if (by_name.count(name) == 0) {
      return absl::InvalidArgumentError(absl::StrCat("missing tensor '", name,
                                                     "' (shape ", ShapeString(shape),
                                                     ") in checkpoint '", dir, "'"));
    }
  }
  return absl::OkStatus();
}

const TensorView* Checkpoint::Find(absl::string_view name) const {
  auto it = std::lower_bound(
      tensors_.begin(), tensors_.end(), name,
      [](const TensorView& t, absl::string_view n) { return t.name < n; });
  if (it == tensors_.end() || it->name != name) return nullptr;
  return &*it;
}

int64_t Checkpoint::total_tensor_bytes() const {
  int64_t total = 0;
  for (const TensorView& t : tensors_) total += t.num_bytes;
  return total;
}

int64_t Checkpoint::total_parameters() const {
  int64_t total = 0;
  for (const TensorView& t : tensors_) total += t.num_elements();
  return total;
}

}  // namespace openelm
