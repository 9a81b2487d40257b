#ifndef OPENELM_ENGINE_BASE_JSON_H_
#define OPENELM_ENGINE_BASE_JSON_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace openelm {

// A parsed JSON value (RFC 8259). Used for config.json, safetensors headers,
// the sharded index and the tenants file. Objects keep keys sorted and reject
// duplicate keys. Numbers are kept as double plus, when the literal is an
// integer that fits, as int64.
class JsonValue {
 public:
  enum class Type { kNull, kBool, kNumber, kString, kArray, kObject };

  Type type() const { return type_; }
  bool is_null() const { return type_ == Type::kNull; }
  bool is_bool() const { return type_ == Type::kBool; }
  bool is_number() const { return type_ == Type::kNumber; }
  bool is_integer() const { return type_ == Type::kNumber && is_int_; }
  bool is_string() const { return type_ == Type::kString; }
  bool is_array() const { return type_ == Type::kArray; }
  bool is_object() const { return type_ == Type::kObject; }

  // Accessors; calling the wrong one is a bug (checked).
  bool as_bool() const;
  double as_double() const;
  int64_t as_int() const;
  const std::string& as_string() const;
  const std::vector<JsonValue>& as_array() const;
  const std::map<std::string, JsonValue>& as_object() const;

  // Object member or nullptr when absent (or when this is not an object).
  const JsonValue* Find(absl::string_view key) const;

  static JsonValue Null();
  static JsonValue Bool(bool v);
  static JsonValue Number(double v);
  static JsonValue Integer(int64_t v);
  static JsonValue String(std::string v);
  static JsonValue Array(std::vector<JsonValue> v);
  static JsonValue Object(std::map<std::string, JsonValue> v);

  // Serialises compactly (keys in sorted order); used by the generator.
  std::string Dump() const;

 private:
  Type type_ = Type::kNull;
  bool bool_ = false;
  bool is_int_ = false;
  double number_ = 0;
  int64_t int_ = 0;
  std::string string_;
  std::vector<JsonValue> array_;
  std::map<std::string, JsonValue> object_;
};

// Parses `text` completely (trailing garbage is an error). Errors are
// kInvalidArgument with the byte offset. Nesting deeper than 64 is refused.
absl::StatusOr<JsonValue> ParseJson(absl::string_view text);

}  // namespace openelm

#endif  // OPENELM_ENGINE_BASE_JSON_H_
