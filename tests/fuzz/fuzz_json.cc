// Fuzz target: ParseJson (config.json, safetensors headers, the shard index
// and the tenants file all go through it).
//
// Properties: never crashes; errors are kInvalidArgument; an accepted
// document serialises (Dump) to text that parses again to the same Dump.

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/base/json.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) { return 0; }

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<openelm::JsonValue> parsed = openelm::ParseJson(text);
  if (!parsed.ok()) {
    OPENELM_FUZZ_CHECK(parsed.status().code() == absl::StatusCode::kInvalidArgument,
                       "unexpected error code: %s", parsed.status().ToString().c_str());
    return 0;
  }
  const std::string dumped = parsed->Dump();
  absl::StatusOr<openelm::JsonValue> reparsed = openelm::ParseJson(dumped);
  OPENELM_FUZZ_CHECK(reparsed.ok(), "Dump() output does not parse: %s\n  dump: %s",
                     reparsed.status().ToString().c_str(), dumped.c_str());
  OPENELM_FUZZ_CHECK(reparsed->Dump() == dumped, "Dump() is not stable:\n  %s\n  %s",
                     dumped.c_str(), reparsed->Dump().c_str());
  return 0;
}
