// Fuzz target: OpenElmConfig::FromJson (a checkpoint's config.json).
//
// Properties: never crashes (UBSan also watches the size arithmetic);
// errors are kInvalidArgument; an accepted config has one LayerShape per
// layer with positive sizes, and its own config.json text
// (OpenElmConfigToJson) is accepted again with the same shapes.

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/model/openelm_config.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) { return 0; }

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<openelm::OpenElmConfig> config =
      openelm::OpenElmConfig::FromJson(text, "fuzz/config.json");
  if (!config.ok()) {
    OPENELM_FUZZ_CHECK(config.status().code() == absl::StatusCode::kInvalidArgument,
                       "unexpected error code: %s", config.status().ToString().c_str());
    return 0;
  }
  OPENELM_FUZZ_CHECK(static_cast<int32_t>(config->layers.size()) == config->num_layers,
                     "%zu layer shapes for %d layers", config->layers.size(),
                     config->num_layers);
  for (const openelm::LayerShape& layer : config->layers) {
    OPENELM_FUZZ_CHECK(
        layer.num_query_heads > 0 && layer.num_kv_heads > 0 && layer.ffn_dim > 0,
        "non-positive layer shape q=%d kv=%d ffn=%d", layer.num_query_heads,
        layer.num_kv_heads, layer.ffn_dim);
  }
  // Derived sizes must be computable without overflow for any accepted config.
  OPENELM_FUZZ_CHECK(config->NumParameters() > 0, "NumParameters() = %lld",
                     static_cast<long long>(config->NumParameters()));
  OPENELM_FUZZ_CHECK(config->KvBytesPerToken(2) > 0, "KvBytesPerToken(2) = %lld",
                     static_cast<long long>(config->KvBytesPerToken(2)));

  const std::string again = openelm::OpenElmConfigToJson(*config, "float32");
  absl::StatusOr<openelm::OpenElmConfig> round =
      openelm::OpenElmConfig::FromJson(again, "fuzz/round_trip.json");
  OPENELM_FUZZ_CHECK(round.ok(), "own config.json rejected: %s\n  %s",
                     round.status().ToString().c_str(), again.c_str());
  OPENELM_FUZZ_CHECK(round->layers.size() == config->layers.size(),
                     "round trip changed the layer count");
  for (size_t i = 0; i < config->layers.size(); ++i) {
    const openelm::LayerShape& a = config->layers[i];
    const openelm::LayerShape& b = round->layers[i];
    OPENELM_FUZZ_CHECK(a.num_query_heads == b.num_query_heads &&
                           a.num_kv_heads == b.num_kv_heads && a.ffn_dim == b.ffn_dim,
                       "round trip changed layer %zu: q %d->%d kv %d->%d ffn %d->%d", i,
                       a.num_query_heads, b.num_query_heads, a.num_kv_heads,
                       b.num_kv_heads, a.ffn_dim, b.ffn_dim);
  }
  return 0;
}
