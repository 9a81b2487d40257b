#ifndef OPENELM_ENGINE_BASE_JSON_H_
#define OPENELM_ENGINE_BASE_JSON_H_

// JSON for config.json, safetensors headers, the sharded index and the
// tenants file: nlohmann::json (Debian's nlohmann-json3-dev) used directly,
// plus the few helpers below that keep its exceptions away from callers and
// add the checks those files need.

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace openelm {

// Parses `text` as one complete JSON document (RFC 8259; trailing
// non-whitespace is an error, strings must be valid UTF-8). Stricter than
// nlohmann::json::parse: duplicate object keys (compared after unescaping) and
// nesting deeper than 64 arrays/objects are refused. Objects keep their keys
// sorted. Never throws: errors are kInvalidArgument
// "JSON parse error at byte <offset>: <what>", with the 0-based byte offset.
absl::StatusOr<nlohmann::json> ParseJson(absl::string_view text);

// The member `key` of `object`, or nullptr when it is absent or `object` is
// not an object.
const nlohmann::json* JsonFind(const nlohmann::json& object, absl::string_view key);

// The value when it is an integer literal that fits in int64 (so not 1.0,
// 1e2, nor 2^63); nullopt otherwise.
std::optional<int64_t> JsonInt64(const nlohmann::json& value);

// Compact text (keys sorted). Never throws: invalid UTF-8 in strings built by
// our own code is written as U+FFFD. A float that is a whole number keeps a
// ".0" so that it reads back as a float; NaN and infinities are written null.
std::string JsonDump(const nlohmann::json& value);

}  // namespace openelm

#endif  // OPENELM_ENGINE_BASE_JSON_H_
