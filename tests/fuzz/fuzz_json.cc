// Fuzz target: ParseJson, the nlohmann::json wrapper that config.json,
// safetensors headers, the shard index and the tenants file go through (each
// of those readers has its own target: fuzz_config, fuzz_safetensors,
// fuzz_safetensors_index, fuzz_tenants_config).
//
// Properties: never crashes and never throws; errors are kInvalidArgument
// "JSON parse error at byte N: ..." with N within the input; it accepts
// exactly what nlohmann::json::accept accepts, less documents with duplicate
// keys or nesting deeper than 64; an accepted document's JsonDump parses
// again to an equal document with the same text.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "engine/base/json.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

// Nesting depth of an accepted document.
int Depth(const nlohmann::json& v) {
  if (!v.is_structured()) return 0;
  int deepest = 0;
  for (const nlohmann::json& child : v) deepest = std::max(deepest, Depth(child));
  return deepest + 1;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) { return 0; }

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  const char* begin = reinterpret_cast<const char*>(data);
  const bool library_accepts = nlohmann::json::accept(begin, begin + size);
  absl::StatusOr<nlohmann::json> parsed = openelm::ParseJson(text);
  if (!parsed.ok()) {
    const absl::Status& s = parsed.status();
    OPENELM_FUZZ_CHECK(s.code() == absl::StatusCode::kInvalidArgument,
                       "unexpected error code: %s", s.ToString().c_str());
    constexpr absl::string_view kPrefix = "JSON parse error at byte ";
    absl::string_view rest = s.message();
    OPENELM_FUZZ_CHECK(absl::ConsumePrefix(&rest, kPrefix), "unexpected message: %s",
                       s.ToString().c_str());
    const size_t colon = rest.find(':');
    size_t offset = 0;
    OPENELM_FUZZ_CHECK(
        colon != rest.npos && absl::SimpleAtoi(rest.substr(0, colon), &offset) &&
            offset <= size,
        "bad offset in %s (input of %zu bytes)", s.ToString().c_str(), size);
    OPENELM_FUZZ_CHECK(!library_accepts ||
                           absl::StrContains(s.message(), "duplicate key") ||
                           absl::StrContains(s.message(), "nesting deeper than 64"),
                       "valid JSON refused: %s", s.ToString().c_str());
    return 0;
  }
  OPENELM_FUZZ_CHECK(library_accepts,
                     "nlohmann::json::accept refuses what ParseJson took");
  OPENELM_FUZZ_CHECK(Depth(*parsed) <= 64, "accepted nesting of %d", Depth(*parsed));
  const std::string dumped = openelm::JsonDump(*parsed);
  absl::StatusOr<nlohmann::json> reparsed = openelm::ParseJson(dumped);
  OPENELM_FUZZ_CHECK(reparsed.ok(), "JsonDump output does not parse: %s\n  dump: %s",
                     reparsed.status().ToString().c_str(), dumped.c_str());
  OPENELM_FUZZ_CHECK(*reparsed == *parsed, "JsonDump output reads back differently: %s",
                     dumped.c_str());
  OPENELM_FUZZ_CHECK(openelm::JsonDump(*reparsed) == dumped,
                     "JsonDump is not stable:\n  %s\n  %s", dumped.c_str(),
                     openelm::JsonDump(*reparsed).c_str());
  return 0;
}
