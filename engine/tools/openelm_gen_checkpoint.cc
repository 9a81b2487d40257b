// openelm_gen_checkpoint: writes a random-weight OpenELM checkpoint in the
// Hugging Face layout, then opens it with the engine's loader and prints what
// the loader sees.
//
//   openelm_gen_checkpoint --size=270M --seed=1 --dtype=bf16 --out=/tmp/elm
//
// Same flags -> same bytes.

#include <chrono>
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/base/status_macros.h"
#include "engine/model/checkpoint.h"
#include "engine/model/openelm_config.h"

ABSL_FLAG(std::string, size, "tiny", "Model size: tiny, 270M, 450M, 1_1B or 3B");
ABSL_FLAG(uint64_t, seed, 0, "Random seed");
ABSL_FLAG(std::string, dtype, "bf16", "Weight dtype: bf16, f16 or f32");
ABSL_FLAG(std::string, out, "", "Output directory (created if missing)");
ABSL_FLAG(int32_t, shards, 0,
          "Number of safetensors shards; 0 = as published (2 for 3B, else 1)");

namespace openelm {
namespace {

absl::Status Run() {
  const std::string out = absl::GetFlag(FLAGS_out);
  if (out.empty()) return absl::InvalidArgumentError("--out is required");
  const std::string size = absl::GetFlag(FLAGS_size);
  OPENELM_ASSIGN_OR_RETURN(OpenElmConfig config, MakeOpenElmConfig(size));

  const std::string dtype_name = absl::GetFlag(FLAGS_dtype);
  DType dtype;
  if (dtype_name == "bf16") {
    dtype = DType::kBF16;
  } else if (dtype_name == "f16") {
    dtype = DType::kF16;
  } else if (dtype_name == "f32") {
    dtype = DType::kF32;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("--dtype must be bf16, f16 or f32, got '", dtype_name, "'"));
  }
  int32_t shards = absl::GetFlag(FLAGS_shards);
  if (shards == 0) shards = size == "3B" ? 2 : 1;

  const auto start = std::chrono::steady_clock::now();
  OPENELM_RETURN_IF_ERROR(
      WriteRandomCheckpoint(config, absl::GetFlag(FLAGS_seed), dtype, shards, out));
  const auto written = std::chrono::steady_clock::now();
  OPENELM_ASSIGN_OR_RETURN(std::unique_ptr<Checkpoint> ckpt, Checkpoint::Open(out));
  const auto opened = std::chrono::steady_clock::now();

  const auto seconds = [](auto a, auto b) {
    return std::chrono::duration<double>(b - a).count();
  };
  std::printf("wrote %s: OpenELM-%s (%s), %s, %d shard(s), seed %llu\n", out.c_str(),
              size.c_str(), ckpt->config().SizeName().c_str(), dtype_name.c_str(), shards,
              static_cast<unsigned long long>(absl::GetFlag(FLAGS_seed)));
  std::printf("  layers %d, model_dim %d, head_dim %d, vocab %d\n", config.num_layers,
              config.model_dim, config.head_dim, config.vocab_size);
  std::printf("  loader: %zu tensors, %lld parameters, %lld bytes of tensor data\n",
              ckpt->tensors().size(), static_cast<long long>(ckpt->total_parameters()),
              static_cast<long long>(ckpt->total_tensor_bytes()));
  std::printf("  config.json NumParameters: %lld\n",
              static_cast<long long>(ckpt->config().NumParameters()));
  std::printf("  generate %.2f s, open+validate %.3f s\n", seconds(start, written),
              seconds(written, opened));
  return absl::OkStatus();
}

}  // namespace
}  // namespace openelm

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Writes a random-weight OpenELM checkpoint (config.json + safetensors).\n"
      "  openelm_gen_checkpoint --size tiny|270M|450M|1_1B|3B --seed N "
      "--dtype bf16|f32 --out DIR [--shards N]");
  absl::ParseCommandLine(argc, argv);
  const absl::Status status = openelm::Run();
  if (!status.ok()) {
    std::fprintf(stderr, "openelm_gen_checkpoint: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
