// WriteRandomCheckpoint: deterministic random-weight checkpoints in the
// Hugging Face layout (config.json + safetensors, optionally sharded).

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/base/json.h"
#include "engine/base/status_macros.h"
#include "engine/model/checkpoint.h"
#include "engine/model/half_float.h"

namespace openelm {
namespace {

constexpr double kInitStd = 0.02;
// Elements per independently seeded stream. Part of the output format: a
// different value changes every byte, whatever the number of threads.
constexpr int64_t kChunkElements = int64_t{1} << 16;

uint64_t SplitMix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t Fnv1a64(absl::string_view s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (char c : s) {
    h ^= static_cast<uint8_t>(c);
    h *= 0x100000001b3ull;
  }
  return h;
}

// Fills `count` elements of tensor `name` starting at element `first` (a
// multiple of kChunkElements) with `offset + kInitStd * N(0, 1)`, encoded
// as `dtype` at `dst`. The stream depends only on (seed, name, chunk), so a
// tensor's values are the same whatever the file layout or thread count.
void FillChunk(uint64_t seed, uint64_t name_hash, int64_t first, int64_t count,
               float offset, DType dtype, char* dst) {
  uint64_t state = seed ^ (name_hash * 0x9e3779b97f4a7c15ull);
  state ^= SplitMix64(state) + static_cast<uint64_t>(first / kChunkElements);
  SplitMix64(state);
  const auto store = [&](int64_t i, float f) {
    switch (dtype) {
      case DType::kF32:
        std::memcpy(dst + 4 * i, &f, 4);
        break;
      case DType::kBF16: {
        const uint16_t h = F32ToBF16(f);
        std::memcpy(dst + 2 * i, &h, 2);
        break;
      }
      case DType::kF16: {
        const uint16_t h = F32ToF16(f);
        std::memcpy(dst + 2 * i, &h, 2);
        break;
      }
      case DType::kI8:  // refused by WriteRandomCheckpoint
        break;
    }
  };
  // Box-Muller on pairs in single precision (the weights are stored in at
  // most f32 anyway): u1 in (0, 1] and u2 in [0, 1), 24 random bits each,
  // both taken from one 64-bit draw.
  constexpr float kTwoPi = 6.2831853071795864f;
  constexpr float kScale = 1.0f / 16777216.0f;  // 2^-24
  const float std_dev = static_cast<float>(kInitStd);
  for (int64_t i = 0; i < count; i += 2) {
    const uint64_t bits = SplitMix64(state);
    const float u1 = static_cast<float>((bits >> 40) + 1) * kScale;
    const float u2 = static_cast<float>((bits >> 16) & 0xffffff) * kScale;
    const float r = std_dev * std::sqrt(-2.0f * std::log(u1));
    const float angle = kTwoPi * u2;
    store(i, offset + r * std::cos(angle));
    if (i + 1 < count) store(i + 1, offset + r * std::sin(angle));
  }
}

struct PlannedTensor {
  std::string name;
  std::vector<int64_t> shape;
  int64_t num_elements = 0;
  int64_t num_bytes = 0;
  int64_t begin = 0;  // offset in its shard's data area
  int32_t shard = 0;
};

// Splits tensors (in name order) into `num_shards` runs of similar byte size,
// none empty.
void AssignShards(std::vector<PlannedTensor>& tensors, int32_t num_shards) {
  int64_t remaining_bytes = 0;
  for (const PlannedTensor& t : tensors) remaining_bytes += t.num_bytes;
  size_t next = 0;
  for (int32_t s = 0; s < num_shards; ++s) {
    const int32_t shards_left = num_shards - s;
    const int64_t target = remaining_bytes / shards_left;
    int64_t bytes = 0;
    do {
      tensors[next].shard = s;
      bytes += tensors[next].num_bytes;
      ++next;
    } while (next < tensors.size() &&
             tensors.size() - next > static_cast<size_t>(shards_left - 1) &&
             (s == num_shards - 1 || bytes + tensors[next].num_bytes / 2 <= target));
    remaining_bytes -= bytes;
  }
}

std::string ShardName(int32_t shard, int32_t num_shards) {
  return absl::StrFormat("model-%05d-of-%05d.safetensors", shard + 1, num_shards);
}

absl::Status WriteTextFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("cannot write '", path, "'"));
  return absl::OkStatus();
}

// Writes one safetensors file holding `tensors` (all of one shard).
absl::Status WriteShard(const std::string& path,
                        const std::vector<PlannedTensor*>& tensors, uint64_t seed,
                        DType dtype) {
  nlohmann::json header = nlohmann::json::object();
  header["__metadata__"] = {{"format", "pt"}};
  int64_t data_bytes = 0;
  for (const PlannedTensor* t : tensors) {
    header[t->name] = {
        {"dtype", std::string(DTypeName(dtype))},
        {"shape", t->shape},
        {"data_offsets", nlohmann::json::array({t->begin, t->begin + t->num_bytes})}};
    data_bytes = std::max(data_bytes, t->begin + t->num_bytes);
  }
  std::string header_text = JsonDump(header);
  // Pad with spaces (allowed by the format) so the data starts 8-byte aligned.
  header_text.append((8 - header_text.size() % 8) % 8, ' ');
  const int64_t file_bytes = 8 + static_cast<int64_t>(header_text.size()) + data_bytes;

  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::InternalError(
        absl::StrCat("cannot create '", path, "': ", std::strerror(errno)));
  }
  if (ftruncate(fd, file_bytes) != 0) {
    const int err = errno;
    close(fd);
    return absl::ResourceExhaustedError(absl::StrCat(
        "cannot size '", path, "' to ", file_bytes, " bytes: ", std::strerror(err)));
  }
  void* mapped = mmap(nullptr, file_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  const int mmap_errno = errno;
  close(fd);  // the mapping keeps the file open
  if (mapped == MAP_FAILED) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "cannot mmap '", path, "' for writing: ", std::strerror(mmap_errno)));
  }
  char* base = static_cast<char*>(mapped);
  uint64_t header_len = header_text.size();
  for (int i = 0; i < 8; ++i) base[i] = static_cast<char>((header_len >> (8 * i)) & 0xff);
  std::memcpy(base + 8, header_text.data(), header_text.size());
  char* data = base + 8 + header_text.size();

  // Work items: (tensor, chunk). Threads take items in any order; each item's
  // bytes depend only on its own stream.
  struct Item {
    const PlannedTensor* tensor;
    int64_t first;
  };
  std::vector<Item> items;
  for (const PlannedTensor* t : tensors) {
    for (int64_t first = 0; first < t->num_elements; first += kChunkElements) {
      items.push_back({t, first});
    }
  }
  std::atomic<size_t> next{0};
  const auto worker = [&]() {
    for (size_t i = next.fetch_add(1); i < items.size(); i = next.fetch_add(1)) {
      const PlannedTensor& t = *items[i].tensor;
      const int64_t count = std::min(kChunkElements, t.num_elements - items[i].first);
      const float offset = absl::EndsWith(t.name, "norm.weight") ? 1.0f : 0.0f;
      FillChunk(seed, Fnv1a64(t.name), items[i].first, count, offset, dtype,
                data + t.begin + items[i].first * DTypeBytes(dtype));
    }
  };
  const unsigned num_threads = std::clamp(std::thread::hardware_concurrency(), 1u, 16u);
  std::vector<std::thread> threads;
  for (unsigned i = 1; i < num_threads; ++i) threads.emplace_back(worker);
  worker();
  for (std::thread& t : threads) t.join();

  const int synced = msync(mapped, file_bytes, MS_ASYNC);
  munmap(mapped, file_bytes);
  if (synced != 0)
    return absl::InternalError(absl::StrCat("msync failed for '", path, "'"));
  return absl::OkStatus();
}

}  // namespace

absl::Status WriteRandomCheckpoint(const OpenElmConfig& config, uint64_t seed,
                                   DType dtype, int32_t num_shards,
                                   const std::string& dir) {
  if (static_cast<int32_t>(config.layers.size()) != config.num_layers ||
      config.num_layers <= 0) {
    return absl::InvalidArgumentError("config has no per-layer shapes");
  }
  if (dtype == DType::kI8) {
    return absl::InvalidArgumentError(
        "checkpoints are written as F32, F16 or BF16, not I8");
  }
  // The config must survive its own round trip, or the checkpoint would not open.
  const char* torch_dtype = dtype == DType::kF32   ? "float32"
                            : dtype == DType::kF16 ? "float16"
                                                   : "bfloat16";
  const std::string config_text = OpenElmConfigToJson(config, torch_dtype);
  OPENELM_RETURN_IF_ERROR(OpenElmConfig::FromJson(config_text, "<generated>").status());

  std::vector<PlannedTensor> tensors;
  for (auto& [name, shape] : ExpectedTensors(config)) {
    PlannedTensor t;
    t.name = name;
    t.shape = shape;
    t.num_elements = 1;
    for (int64_t d : shape) t.num_elements *= d;
    t.num_bytes = t.num_elements * DTypeBytes(dtype);
    tensors.push_back(std::move(t));
  }
  std::sort(
      tensors.begin(), tensors.end(),
      [](const PlannedTensor& a, const PlannedTensor& b) { return a.name < b.name; });
  if (num_shards < 1 || num_shards > static_cast<int32_t>(tensors.size())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "num_shards must be in [1, ", tensors.size(), "], got ", num_shards));
  }
  AssignShards(tensors, num_shards);
  std::vector<int64_t> shard_bytes(num_shards, 0);
  for (PlannedTensor& t : tensors) {  // name order = header order = data order
    t.begin = shard_bytes[t.shard];
    shard_bytes[t.shard] += t.num_bytes;
  }

  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("cannot create directory '", dir, "': ", ec.message()));
  }
  const std::string prefix = dir.empty() || dir.back() == '/' ? dir : dir + "/";
  OPENELM_RETURN_IF_ERROR(WriteTextFile(prefix + "config.json", config_text));
  // Remove the other layout's files so the directory holds exactly one.
  std::filesystem::remove(prefix + "model.safetensors", ec);
  std::filesystem::remove(prefix + "model.safetensors.index.json", ec);

  nlohmann::json weight_map = nlohmann::json::object();
  for (int32_t s = 0; s < num_shards; ++s) {
    std::vector<PlannedTensor*> in_shard;
    for (PlannedTensor& t : tensors) {
      if (t.shard == s) in_shard.push_back(&t);
    }
    const std::string file =
        num_shards == 1 ? "model.safetensors" : ShardName(s, num_shards);
    for (const PlannedTensor* t : in_shard) weight_map[t->name] = file;
    OPENELM_RETURN_IF_ERROR(WriteShard(prefix + file, in_shard, seed, dtype));
  }
  if (num_shards > 1) {
    int64_t total = 0;
    for (int64_t b : shard_bytes) total += b;
    const nlohmann::json index = {{"metadata", {{"total_size", total}}},
                                  {"weight_map", std::move(weight_map)}};
    OPENELM_RETURN_IF_ERROR(
        WriteTextFile(prefix + "model.safetensors.index.json", JsonDump(index) + "\n"));
  }
  return absl::OkStatus();
}

}  // namespace openelm
