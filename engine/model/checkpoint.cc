#include "engine/model/checkpoint.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "engine/base/json.h"
#include "engine/base/status_macros.h"
#include "engine/model/half_float.h"

namespace openelm {

int32_t DTypeBytes(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return 4;
    case DType::kF16:
      return 2;
    case DType::kBF16:
      return 2;
    case DType::kI8:
      return 1;
  }
  return 0;
}

absl::string_view DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return "F32";
    case DType::kF16:
      return "F16";
    case DType::kBF16:
      return "BF16";
    case DType::kI8:
      return "I8";
  }
  return "?";
}

int64_t TensorView::num_elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

namespace {

constexpr int64_t kMaxHeaderBytes = int64_t{100} << 20;  // 100 MiB
constexpr char kSingleFile[] = "model.safetensors";
constexpr char kIndexFile[] = "model.safetensors.index.json";

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

std::string JoinPath(const std::string& dir, absl::string_view name) {
  if (dir.empty() || dir.back() == '/') return absl::StrCat(dir, name);
  return absl::StrCat(dir, "/", name);
}

bool FileExists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

absl::StatusOr<std::string> ReadSmallFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open '", path, "'"));
  std::ostringstream buf;
  buf << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("error reading '", path, "'"));
  return buf.str();
}

absl::StatusOr<DType> ParseDType(absl::string_view name) {
  if (name == "F32") return DType::kF32;
  if (name == "F16") return DType::kF16;
  if (name == "BF16") return DType::kBF16;
  return absl::InvalidArgumentError("unsupported dtype");
}

// One tensor entry of a safetensors header before it is bound to memory.
struct RawEntry {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  int64_t begin = 0;
  int64_t end = 0;
};

// Parses and validates one tensor entry of a safetensors header.
absl::StatusOr<RawEntry> ParseEntry(const std::string& file, const std::string& name,
                                    const nlohmann::json& v) {
  const nlohmann::json* dtype = JsonFind(v, "dtype");
  const nlohmann::json* shape = JsonFind(v, "shape");
  const nlohmann::json* offsets = JsonFind(v, "data_offsets");
  if (!v.is_object() || dtype == nullptr || shape == nullptr || offsets == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("safetensors file '", file, "': entry for tensor '", name,
                     "' must be an object with dtype, shape and data_offsets"));
  }
  RawEntry e;
  e.name = name;
  absl::StatusOr<DType> parsed_dtype = dtype->is_string()
                                           ? ParseDType(dtype->get<std::string>())
                                           : absl::InvalidArgumentError("not a string");
  if (!parsed_dtype.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor '", name, "' in '", file, "' has unsupported dtype ",
                     JsonDump(*dtype), " (supported: F32, F16, BF16)"));
  }
  e.dtype = *parsed_dtype;
  bool shape_ok = shape->is_array() && shape->size() <= 8;
  if (shape_ok) {
    for (const nlohmann::json& d : *shape) {
      const std::optional<int64_t> n = JsonInt64(d);
      if (!n.has_value() || *n < 0 || *n > (int64_t{1} << 40)) {
        shape_ok = false;
        break;
      }
      e.shape.push_back(*n);
    }
  }
  if (!shape_ok) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor '", name, "' in '", file, "' has invalid shape ", JsonDump(*shape),
        ": expected a list of at most 8 non-negative integers"));
  }
  // Exact integers only: 1.0, 1e3 and values beyond int64 are refused.
  std::optional<int64_t> begin;
  std::optional<int64_t> end;
  if (offsets->is_array() && offsets->size() == 2) {
    begin = JsonInt64((*offsets)[0]);
    end = JsonInt64((*offsets)[1]);
  }
  if (!begin.has_value() || !end.has_value() || *begin < 0 || *begin > *end) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor '", name, "' in '", file, "' has invalid data_offsets ",
        JsonDump(*offsets), ": expected [begin, end] with 0 <= begin <= end"));
  }
  e.begin = *begin;
  e.end = *end;
  // Byte size must equal prod(shape) * element size (no overflow possible:
  // at most 8 dims of <= 2^40 would overflow, so check as we go).
  int64_t want = DTypeBytes(e.dtype);
  bool overflow = false;
  for (int64_t d : e.shape) overflow |= __builtin_mul_overflow(want, d, &want);
  if (overflow || want != e.end - e.begin) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor '", name, "' in '", file, "' has data_offsets [", e.begin, ", ", e.end,
        "] (", e.end - e.begin, " bytes) but shape ", ShapeString(e.shape), " of ",
        DTypeName(e.dtype), " needs ",
        overflow ? "an impossible number of" : absl::StrCat(want), " bytes"));
  }
  return e;
}

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

// A read-only private mapping of a whole file.
struct FileMapping {
  FileMapping() = default;
  FileMapping(const FileMapping&) = delete;
  FileMapping& operator=(const FileMapping&) = delete;
  ~FileMapping() {
    if (data != nullptr) munmap(const_cast<char*>(data), size);
  }
  std::string path;
  const char* data = nullptr;  // nullptr for an empty file
  size_t size = 0;
};

// Maps `path` read-only. An empty file gets no mapping.
absl::StatusOr<std::unique_ptr<FileMapping>> MapFile(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT)
      return absl::NotFoundError(absl::StrCat("'", path, "' does not exist"));
    return absl::PermissionDeniedError(
        absl::StrCat("cannot open '", path, "': ", std::strerror(errno)));
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    const int err = errno;
    close(fd);
    return absl::InternalError(
        absl::StrCat("cannot stat '", path, "': ", std::strerror(err)));
  }
  auto m = std::make_unique<FileMapping>();
  m->path = path;
  m->size = static_cast<size_t>(st.st_size);
  if (m->size > 0) {
    void* p = mmap(nullptr, m->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      close(fd);
      return absl::ResourceExhaustedError(
          absl::StrCat("cannot mmap '", path, "': ", std::strerror(err)));
    }
    m->data = static_cast<const char*>(p);
  }
  close(fd);  // the mapping keeps the file alive
  return m;
}

// Validates one safetensors file and returns views of its tensors.
absl::StatusOr<std::vector<TensorView>> ParseSafetensors(const FileMapping& m) {
  const std::string& file = m.path;
  if (m.size < 8) {
    return absl::InvalidArgumentError(
        absl::StrCat("safetensors file '", file, "' is truncated: ", m.size,
                     " bytes, too short for the 8-byte header length"));
  }
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i)
    header_len = (header_len << 8) | static_cast<uint8_t>(m.data[i]);
  if (header_len > static_cast<uint64_t>(kMaxHeaderBytes)) {
    return absl::InvalidArgumentError(absl::StrCat("safetensors file '", file,
                                                   "': header length ", header_len,
                                                   " exceeds the 100 MiB limit"));
  }
  if (header_len > m.size - 8) {
    return absl::InvalidArgumentError(
        absl::StrCat("safetensors file '", file, "': header length ", header_len,
                     " runs past the end of the file (", m.size, " bytes)"));
  }
  absl::StatusOr<nlohmann::json> header =
      ParseJson(absl::string_view(m.data + 8, header_len));
  if (!header.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("safetensors file '", file,
                     "': invalid header JSON: ", header.status().message()));
  }
  if (!header->is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("safetensors file '", file, "': header must be a JSON object"));
  }
  std::vector<RawEntry> entries;
  for (const auto& [name, v] : header->items()) {
    if (name == "__metadata__") {
      if (!v.is_object()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "safetensors file '", file, "': __metadata__ must be an object"));
      }
      continue;
    }
    OPENELM_ASSIGN_OR_RETURN(RawEntry e, ParseEntry(file, name, v));
    entries.push_back(std::move(e));
  }

  // Overlaps: after sorting by start, each non-empty range must begin at or
  // after the end of every earlier one.
  std::vector<const RawEntry*> by_offset;
  for (const RawEntry& e : entries) by_offset.push_back(&e);
  std::sort(by_offset.begin(), by_offset.end(), [](const RawEntry* a, const RawEntry* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->name < b->name;
  });
  const RawEntry* furthest = nullptr;  // the entry reaching furthest so far
  bool contiguous = true;              // ranges tile [0, max_end) with no gaps
  int64_t max_end = 0;
  for (const RawEntry* e : by_offset) {
    if (e->begin == e->end) continue;  // empty tensors occupy no bytes
    if (furthest != nullptr && e->begin < furthest->end) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensors '", furthest->name, "' [", furthest->begin, ", ",
                       furthest->end, ") and '", e->name, "' [", e->begin, ", ", e->end,
                       ") overlap in '", file, "'"));
    }
    if (e->begin != max_end) contiguous = false;
    if (furthest == nullptr || e->end > furthest->end) furthest = e;
    max_end = std::max(max_end, e->end);
  }

  const int64_t data_size = static_cast<int64_t>(m.size - 8 - header_len);
  if (max_end > data_size) {
    if (contiguous) {
      return absl::InvalidArgumentError(absl::StrCat(
          "safetensors file '", file, "' is truncated: its tensors need ", max_end,
          " bytes of data but only ", data_size, " bytes follow the header"));
    }
    for (const RawEntry* e : by_offset) {
      if (e->end > data_size) {
        return absl::InvalidArgumentError(absl::StrCat(
            "tensor '", e->name, "' in '", file, "' has data_offsets [", e->begin, ", ",
            e->end, "] outside the data area of ", data_size, " bytes"));
      }
    }
  }

  const char* data = m.data + 8 + header_len;
  std::vector<TensorView> views;
  for (RawEntry& e : entries) {
    TensorView t;
    t.name = std::move(e.name);
    t.file = file;
    t.dtype = e.dtype;
    t.shape = std::move(e.shape);
    t.data = data + e.begin;
    t.num_bytes = e.end - e.begin;
    views.push_back(std::move(t));
  }
  return views;
}

}  // namespace

// Keeps one mapped file alive for the Checkpoint's views.
struct Checkpoint::Mapping {
  std::unique_ptr<FileMapping> file;
};

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
  const auto add_file_tensors = [&](std::vector<TensorView> views) -> absl::Status {
    for (TensorView& t : views) {
      auto [it, inserted] = by_name.emplace(t.name, t);
      if (!inserted) {
        return absl::InvalidArgumentError(
            absl::StrCat("tensor '", t.name, "' appears in both '", it->second.file,
                         "' and '", t.file, "'"));
      }
    }
    return absl::OkStatus();
  };

  // Like Hugging Face, a single model.safetensors wins over an index.
  const std::string single_path = JoinPath(dir, kSingleFile);
  const std::string index_path = JoinPath(dir, kIndexFile);
  if (FileExists(single_path)) {
    OPENELM_ASSIGN_OR_RETURN(std::unique_ptr<FileMapping> m, MapFile(single_path));
    OPENELM_ASSIGN_OR_RETURN(std::vector<TensorView> views, ParseSafetensors(*m));
    ckpt->mappings_.push_back(std::make_unique<Mapping>(Mapping{std::move(m)}));
    OPENELM_RETURN_IF_ERROR(add_file_tensors(std::move(views)));
  } else if (FileExists(index_path)) {
    OPENELM_ASSIGN_OR_RETURN(std::string index_text, ReadSmallFile(index_path));
    absl::StatusOr<nlohmann::json> index = ParseJson(index_text);
    if (!index.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "index '", index_path, "' is not valid JSON: ", index.status().message()));
    }
    const nlohmann::json* weight_map = JsonFind(*index, "weight_map");
    if (weight_map == nullptr || !weight_map->is_object() || weight_map->empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("index '", index_path,
                       "' has no weight_map object of tensor names to shard files"));
    }
    // shard file -> tensors the index puts there
    std::map<std::string, std::vector<std::string>> shards;
    for (const auto& [name, shard] : weight_map->items()) {
      const std::string* file =
          shard.is_string() ? shard.get_ptr<const std::string*>() : nullptr;
      if (file == nullptr || file->empty() || absl::StrContains(*file, "/") ||
          (*file)[0] == '.') {
        return absl::InvalidArgumentError(absl::StrCat(
            "index '", index_path, "' maps tensor '", name, "' to an invalid shard name ",
            JsonDump(shard), " (must be a file name in the checkpoint directory)"));
      }
      shards[*file].push_back(name);
    }
    for (const auto& [shard, names] : shards) {
      const std::string shard_path = JoinPath(dir, shard);
      if (!FileExists(shard_path)) {
        return absl::NotFoundError(absl::StrCat("index '", index_path, "' maps tensor '",
                                                names.front(), "' to shard '", shard,
                                                "', which does not exist"));
      }
      OPENELM_ASSIGN_OR_RETURN(std::unique_ptr<FileMapping> m, MapFile(shard_path));
      OPENELM_ASSIGN_OR_RETURN(std::vector<TensorView> views, ParseSafetensors(*m));
      ckpt->mappings_.push_back(std::make_unique<Mapping>(Mapping{std::move(m)}));
      std::set<std::string> in_shard;
      for (const TensorView& t : views) {
        const nlohmann::json* listed = JsonFind(*weight_map, t.name);
        if (listed == nullptr || *listed != shard) {
          return absl::InvalidArgumentError(absl::StrCat(
              "tensor '", t.name, "' in shard '", shard_path,
              "' is not listed for that shard in '", index_path, "'",
              listed == nullptr ? ""
                                : absl::StrCat(" (listed in ", JsonDump(*listed), ")")));
        }
        in_shard.insert(t.name);
      }
      for (const std::string& name : names) {
        if (in_shard.count(name) == 0) {
          return absl::InvalidArgumentError(absl::StrCat(
              "tensor '", name, "' is listed in '", index_path, "' for shard '", shard,
              "' but that shard does not contain it"));
        }
      }
      OPENELM_RETURN_IF_ERROR(add_file_tensors(std::move(views)));
    }
  } else {
    return absl::NotFoundError(absl::StrCat("checkpoint '", dir, "' has neither ",
                                            kSingleFile, " nor ", kIndexFile));
  }

  // The exact tensor set, each with the shape the config implies.
  std::map<std::string, std::vector<int64_t>> expected;
  for (auto& [name, shape] : ExpectedTensors(ckpt->config_))
    expected[name] = std::move(shape);
  for (const auto& [name, t] : by_name) {
    auto it = expected.find(name);
    if (it == expected.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("unexpected tensor '", name, "' in '", t.file,
                       "': not part of an OpenELM model with this config.json"));
    }
    if (t.shape != it->second) {
      const std::string why =
          ExplainConfigMismatch(ckpt->config_, name, t.shape, it->second);
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
  for (auto& [name, t] : by_name) ckpt->tensors_.push_back(std::move(t));
  return ckpt;
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

// Elements are read with memcpy: a tensor's offset in the file need not be
// aligned to its element size.
void Checkpoint::ToF32(const TensorView& t, std::vector<float>* out) {
  const int64_t n = t.num_elements();
  out->resize(n);
  if (n == 0) return;
  const char* src = static_cast<const char*>(t.data);
  float* dst = out->data();
  switch (t.dtype) {
    case DType::kF32:
      std::memcpy(dst, src, n * sizeof(float));
      return;
    case DType::kBF16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        dst[i] = BF16ToF32(h);
      }
      return;
    case DType::kF16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        dst[i] = F16ToF32(h);
      }
      return;
    case DType::kI8:  // never parsed from a file (see DType)
      break;
  }
}

void Checkpoint::ToBF16(const TensorView& t, std::vector<uint16_t>* out) {
  const int64_t n = t.num_elements();
  out->resize(n);
  if (n == 0) return;
  const char* src = static_cast<const char*>(t.data);
  uint16_t* dst = out->data();
  switch (t.dtype) {
    case DType::kBF16:
      std::memcpy(dst, src, n * sizeof(uint16_t));
      return;
    case DType::kF32:
      for (int64_t i = 0; i < n; ++i) {
        float f;
        std::memcpy(&f, src + 4 * i, 4);
        dst[i] = F32ToBF16(f);
      }
      return;
    case DType::kF16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        dst[i] = F32ToBF16(F16ToF32(h));  // exact in f32, then one rounding
      }
      return;
    case DType::kI8:  // never parsed from a file (see DType)
      break;
  }
}

}  // namespace openelm
