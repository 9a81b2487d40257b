// Fuzz target: the safetensors reader (single-file checkpoint).
//
// The input is the whole model.safetensors file (8-byte header length, JSON
// header, tensor data); it is written next to a valid config.json of the
// micro checkpoint (micro_checkpoint.h) and opened with Checkpoint::Open.
// See checkpoint_checks.h for the properties.

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "engine/model/openelm_config.h"
#include "tests/fuzz/checkpoint_checks.h"
#include "tests/fuzz/fuzz_util.h"
#include "tests/fuzz/micro_checkpoint.h"

namespace {
std::string* g_dir = nullptr;
}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  g_dir = new std::string(openelm::testing::FuzzTempDir());
  openelm::testing::WriteFileOrDie(
      *g_dir + "/config.json",
      openelm::OpenElmConfigToJson(openelm::testing::MicroConfig()));
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  openelm::testing::WriteFileOrDie(
      *g_dir + "/model.safetensors",
      absl::string_view(reinterpret_cast<const char*>(data), size));
  openelm::testing::OpenAndCheckCheckpoint(*g_dir);
  return 0;
}
