// Fuzz target: the sharded-checkpoint index (model.safetensors.index.json).
//
// Initialisation writes a valid two-shard micro checkpoint (config.json,
// model-00001-of-00002.safetensors, model-00002-of-00002.safetensors); the
// input replaces its index file and the directory is opened with
// Checkpoint::Open. Besides the shared properties (checkpoint_checks.h), an
// index must never make the reader open a file outside the directory.

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "engine/model/checkpoint.h"
#include "tests/fuzz/checkpoint_checks.h"
#include "tests/fuzz/fuzz_util.h"
#include "tests/fuzz/micro_checkpoint.h"

namespace {
std::string* g_dir = nullptr;
}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  g_dir = new std::string(openelm::testing::FuzzTempDir() + "/sharded");
  const absl::Status written = openelm::WriteRandomCheckpoint(
      openelm::testing::MicroConfig(), /*seed=*/7, openelm::DType::kBF16,
      /*num_shards=*/2, *g_dir);
  if (!written.ok()) {
    std::fprintf(stderr, "WriteRandomCheckpoint: %s\n", written.ToString().c_str());
    std::abort();
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  openelm::testing::WriteFileOrDie(
      *g_dir + "/model.safetensors.index.json",
      absl::string_view(reinterpret_cast<const char*>(data), size));
  openelm::testing::OpenAndCheckCheckpoint(*g_dir);
  return 0;
}
