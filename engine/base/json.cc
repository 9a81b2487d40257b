#include "engine/base/json.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <system_error>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/base/check.h"

namespace openelm {

// ---------------------------------------------------------------------------
// JsonValue
// ---------------------------------------------------------------------------

bool JsonValue::as_bool() const {
  OPENELM_CHECK(is_bool()) << "JSON value is not a bool";
  return bool_;
}

double JsonValue::as_double() const {
  OPENELM_CHECK(is_number()) << "JSON value is not a number";
  return number_;
}

int64_t JsonValue::as_int() const {
  OPENELM_CHECK(is_integer()) << "JSON value is not an integer";
  return int_;
}

const std::string& JsonValue::as_string() const {
  OPENELM_CHECK(is_string()) << "JSON value is not a string";
  return string_;
}

const std::vector<JsonValue>& JsonValue::as_array() const {
  OPENELM_CHECK(is_array()) << "JSON value is not an array";
  return array_;
}

const std::map<std::string, JsonValue>& JsonValue::as_object() const {
  OPENELM_CHECK(is_object()) << "JSON value is not an object";
  return object_;
}

const JsonValue* JsonValue::Find(absl::string_view key) const {
  if (!is_object()) return nullptr;
  auto it = object_.find(std::string(key));
  return it == object_.end() ? nullptr : &it->second;
}

JsonValue JsonValue::Null() { return JsonValue(); }

JsonValue JsonValue::Bool(bool v) {
  JsonValue j;
  j.type_ = Type::kBool;
  j.bool_ = v;
  return j;
}

JsonValue JsonValue::Number(double v) {
  JsonValue j;
  j.type_ = Type::kNumber;
  j.number_ = v;
  return j;
}

JsonValue JsonValue::Integer(int64_t v) {
  JsonValue j;
  j.type_ = Type::kNumber;
  j.is_int_ = true;
  j.int_ = v;
  j.number_ = static_cast<double>(v);
  return j;
}

JsonValue JsonValue::String(std::string v) {
  JsonValue j;
  j.type_ = Type::kString;
  j.string_ = std::move(v);
  return j;
}

JsonValue JsonValue::Array(std::vector<JsonValue> v) {
  JsonValue j;
  j.type_ = Type::kArray;
  j.array_ = std::move(v);
  return j;
}

JsonValue JsonValue::Object(std::map<std::string, JsonValue> v) {
  JsonValue j;
  j.type_ = Type::kObject;
  j.object_ = std::move(v);
  return j;
}

namespace {

void DumpString(const std::string& s, std::string* out) {
  out->push_back('"');
  for (const char c : s) {
    const unsigned char u = static_cast<unsigned char>(c);
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\b':
        out->append("\\b");
        break;
      case '\f':
        out->append("\\f");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      default:
        if (u < 0x20) {
          absl::StrAppendFormat(out, "\\u%04x", u);
        } else {
          out->push_back(c);  // UTF-8 passes through unchanged
        }
    }
  }
  out->push_back('"');
}

// Shortest decimal text that reads back to exactly `v`. A value that is a
// whole number keeps a ".0" so that it is read back as a non-integer number.
void DumpDouble(double v, std::string* out) {
  if (!std::isfinite(v)) {  // JSON has no inf/nan
    out->append("null");
    return;
  }
  char buf[64];
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof(buf), "%.*g", precision, v);
    double back = 0;
    std::from_chars(buf, buf + std::strlen(buf), back);
    if (back == v) break;
  }
  std::string text(buf);
  if (text.find_first_of(".eE") == std::string::npos) text += ".0";
  out->append(text);
}

void DumpValue(const JsonValue& v, std::string* out) {
  switch (v.type()) {
    case JsonValue::Type::kNull:
      out->append("null");
      return;
    case JsonValue::Type::kBool:
      out->append(v.as_bool() ? "true" : "false");
      return;
    case JsonValue::Type::kNumber:
      if (v.is_integer()) {
        absl::StrAppend(out, v.as_int());
      } else {
        DumpDouble(v.as_double(), out);
      }
      return;
    case JsonValue::Type::kString:
      DumpString(v.as_string(), out);
      return;
    case JsonValue::Type::kArray: {
      out->push_back('[');
      bool first = true;
      for (const JsonValue& e : v.as_array()) {
        if (!first) out->push_back(',');
        first = false;
        DumpValue(e, out);
      }
      out->push_back(']');
      return;
    }
    case JsonValue::Type::kObject: {
      out->push_back('{');
      bool first = true;
      for (const auto& [key, e] : v.as_object()) {
        if (!first) out->push_back(',');
        first = false;
        DumpString(key, out);
        out->push_back(':');
        DumpValue(e, out);
      }
      out->push_back('}');
      return;
    }
  }
}

// ---------------------------------------------------------------------------
// Parser: recursive descent over the bytes, with an explicit depth bound.
// ---------------------------------------------------------------------------

constexpr int kMaxDepth = 64;

class Parser {
 public:
  explicit Parser(absl::string_view text) : text_(text) {}

  absl::StatusOr<JsonValue> ParseDocument() {
    SkipWhitespace();
    JsonValue value;
    if (absl::Status s = ParseValue(0, &value); !s.ok()) return s;
    SkipWhitespace();
    if (pos_ != text_.size()) return Error("unexpected trailing characters");
    return value;
  }

 private:
  absl::Status Error(absl::string_view what) const { return ErrorAt(pos_, what); }
  absl::Status ErrorAt(size_t offset, absl::string_view what) const {
    return absl::InvalidArgumentError(
        absl::StrCat("JSON parse error at byte ", offset, ": ", what));
  }

  bool AtEnd() const { return pos_ >= text_.size(); }
  char Peek() const { return text_[pos_]; }

  void SkipWhitespace() {
    while (!AtEnd()) {
      const char c = Peek();
      if (c != ' ' && c != '\t' && c != '\n' && c != '\r') return;
      ++pos_;
    }
  }

  absl::Status ParseValue(int depth, JsonValue* out) {
    if (AtEnd()) return Error("unexpected end of input, expected a value");
    switch (Peek()) {
      case '{':
        return ParseObject(depth + 1, out);
      case '[':
        return ParseArray(depth + 1, out);
      case '"': {
        std::string s;
        if (absl::Status st = ParseString(&s); !st.ok()) return st;
        *out = JsonValue::String(std::move(s));
        return absl::OkStatus();
      }
      case 't':
        return ParseLiteral("true", JsonValue::Bool(true), out);
      case 'f':
        return ParseLiteral("false", JsonValue::Bool(false), out);
      case 'n':
        return ParseLiteral("null", JsonValue::Null(), out);
      default:
        if (Peek() == '-' || (Peek() >= '0' && Peek() <= '9')) return ParseNumber(out);
        return Error(absl::StrFormat("unexpected character '%s'", Printable(Peek())));
    }
  }

  static std::string Printable(char c) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f) return std::string(1, c);
    return absl::StrFormat("\\x%02x", u);
  }

  absl::Status ParseLiteral(absl::string_view word, JsonValue value, JsonValue* out) {
    if (text_.substr(pos_, word.size()) != word) return Error("invalid literal");
    pos_ += word.size();
    *out = std::move(value);
    return absl::OkStatus();
  }

  absl::Status ParseObject(int depth, JsonValue* out) {
    if (depth > kMaxDepth) return Error("nesting deeper than 64 levels");
    ++pos_;  // '{'
    std::map<std::string, JsonValue> members;
    SkipWhitespace();
    if (!AtEnd() && Peek() == '}') {
      ++pos_;
      *out = JsonValue::Object(std::move(members));
      return absl::OkStatus();
    }
    while (true) {
      SkipWhitespace();
      if (AtEnd() || Peek() != '"') return Error("expected a string key");
      const size_t key_offset = pos_;
      std::string key;
      if (absl::Status s = ParseString(&key); !s.ok()) return s;
      SkipWhitespace();
      if (AtEnd() || Peek() != ':') return Error("expected ':' after object key");
      ++pos_;
      SkipWhitespace();
      JsonValue value;
      if (absl::Status s = ParseValue(depth, &value); !s.ok()) return s;
      if (!members.emplace(key, std::move(value)).second) {
        return ErrorAt(key_offset, absl::StrCat("duplicate key \"", key, "\""));
      }
      SkipWhitespace();
      if (AtEnd()) return Error("unexpected end of input inside an object");
      if (Peek() == ',') {
        ++pos_;
        continue;
      }
      if (Peek() == '}') {
        ++pos_;
        *out = JsonValue::Object(std::move(members));
        return absl::OkStatus();
      }
      return Error("expected ',' or '}' in an object");
    }
  }

  absl::Status ParseArray(int depth, JsonValue* out) {
    if (depth > kMaxDepth) return Error("nesting deeper than 64 levels");
    ++pos_;  // '['
    std::vector<JsonValue> elements;
    SkipWhitespace();
    if (!AtEnd() && Peek() == ']') {
      ++pos_;
      *out = JsonValue::Array(std::move(elements));
      return absl::OkStatus();
    }
    while (true) {
      SkipWhitespace();
      JsonValue value;
      if (absl::Status s = ParseValue(depth, &value); !s.ok()) return s;
      elements.push_back(std::move(value));
      SkipWhitespace();
      if (AtEnd()) return Error("unexpected end of input inside an array");
      if (Peek() == ',') {
        ++pos_;
        continue;
      }
      if (Peek() == ']') {
        ++pos_;
        *out = JsonValue::Array(std::move(elements));
        return absl::OkStatus();
      }
      return Error("expected ',' or ']' in an array");
    }
  }

  // number = [ "-" ] int [ frac ] [ exp ], exactly as RFC 8259 section 6.
  absl::Status ParseNumber(JsonValue* out) {
    const size_t start = pos_;
    bool integral = true;
    if (Peek() == '-') ++pos_;
    if (AtEnd() || !IsDigit(Peek())) return Error("expected a digit");
    if (Peek() == '0') {
      ++pos_;
      if (!AtEnd() && IsDigit(Peek())) return Error("leading zeros are not allowed");
    } else {
      while (!AtEnd() && IsDigit(Peek())) ++pos_;
    }
    if (!AtEnd() && Peek() == '.') {
      integral = false;
      ++pos_;
      if (AtEnd() || !IsDigit(Peek())) return Error("expected a digit after '.'");
      while (!AtEnd() && IsDigit(Peek())) ++pos_;
    }
    if (!AtEnd() && (Peek() == 'e' || Peek() == 'E')) {
      integral = false;
      ++pos_;
      if (!AtEnd() && (Peek() == '+' || Peek() == '-')) ++pos_;
      if (AtEnd() || !IsDigit(Peek())) return Error("expected a digit in the exponent");
      while (!AtEnd() && IsDigit(Peek())) ++pos_;
    }
    const char* first = text_.data() + start;
    const char* last = text_.data() + pos_;
    if (integral) {
      int64_t i = 0;
      auto [ptr, ec] = std::from_chars(first, last, i);
      if (ec == std::errc() && ptr == last) {
        *out = JsonValue::Integer(i);
        return absl::OkStatus();
      }
      // Too large for int64: fall through and keep it as a double.
    }
    double d = 0;
    auto [ptr, ec] = std::from_chars(first, last, d);
    if (ec == std::errc::result_out_of_range && ptr == last) {
      // from_chars does not say whether it over- or underflowed; strtod does
      // (HUGE_VAL vs a value near zero). Underflow reads as (nearly) zero.
      d = std::strtod(std::string(first, last).c_str(), nullptr);
    }
    if (ec != std::errc() && ec != std::errc::result_out_of_range) {
      return ErrorAt(start, "invalid number");
    }
    if (ptr != last || !std::isfinite(d)) {
      return ErrorAt(start, absl::StrCat("number out of range: ",
                                         absl::string_view(first, last - first)));
    }
    *out = JsonValue::Number(d);
    return absl::OkStatus();
  }

  static bool IsDigit(char c) { return c >= '0' && c <= '9'; }

  static int HexValue(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }

  // Reads the 4 hex digits after "\u".
  absl::Status ParseHex4(uint32_t* out) {
    if (text_.size() - pos_ < 4) return Error("truncated \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      const int h = HexValue(text_[pos_ + i]);
      if (h < 0) return ErrorAt(pos_ + i, "invalid hex digit in \\u escape");
      v = v * 16 + static_cast<uint32_t>(h);
    }
    pos_ += 4;
    *out = v;
    return absl::OkStatus();
  }

  static void AppendUtf8(uint32_t cp, std::string* out) {
    if (cp < 0x80) {
      out->push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }

  // Validates one raw UTF-8 sequence starting at pos_ (lead byte >= 0x80) and
  // copies it. Rejects overlong forms, UTF-16 surrogates and values above
  // U+10FFFF (RFC 3629).
  absl::Status CopyUtf8Sequence(std::string* out) {
    const size_t start = pos_;
    const auto byte = [&](size_t i) {
      return static_cast<unsigned char>(text_[start + i]);
    };
    const unsigned char lead = byte(0);
    int len = 0;
    uint32_t cp = 0;
    if (lead >= 0xC2 && lead <= 0xDF) {
      len = 2;
      cp = lead & 0x1F;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
      len = 3;
      cp = lead & 0x0F;
    } else if (lead >= 0xF0 && lead <= 0xF4) {
      len = 4;
      cp = lead & 0x07;
    } else {
      return ErrorAt(start, "invalid UTF-8 lead byte");
    }
    if (text_.size() - start < static_cast<size_t>(len)) {
      return ErrorAt(start, "truncated UTF-8 sequence");
    }
    for (int i = 1; i < len; ++i) {
      if ((byte(i) & 0xC0) != 0x80)
        return ErrorAt(start + i, "invalid UTF-8 continuation byte");
      cp = (cp << 6) | (byte(i) & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000)) {
      return ErrorAt(start, "overlong UTF-8 sequence");
    }
    if (cp >= 0xD800 && cp <= 0xDFFF) return ErrorAt(start, "UTF-8 encoded surrogate");
    if (cp > 0x10FFFF) return ErrorAt(start, "UTF-8 code point above U+10FFFF");
    out->append(text_.data() + start, len);
    pos_ += len;
    return absl::OkStatus();
  }

  absl::Status ParseString(std::string* out) {
    ++pos_;  // opening quote
    while (true) {
      if (AtEnd()) return Error("unterminated string");
      const unsigned char c = static_cast<unsigned char>(Peek());
      if (c == '"') {
        ++pos_;
        return absl::OkStatus();
      }
      if (c < 0x20) return Error("unescaped control character in string");
      if (c >= 0x80) {
        if (absl::Status s = CopyUtf8Sequence(out); !s.ok()) return s;
        continue;
      }
      if (c != '\\') {
        out->push_back(static_cast<char>(c));
        ++pos_;
        continue;
      }
      const size_t escape_offset = pos_;
      ++pos_;
      if (AtEnd()) return Error("unterminated escape");
      const char e = Peek();
      ++pos_;
      switch (e) {
        case '"':
          out->push_back('"');
          break;
        case '\\':
          out->push_back('\\');
          break;
        case '/':
          out->push_back('/');
          break;
        case 'b':
          out->push_back('\b');
          break;
        case 'f':
          out->push_back('\f');
          break;
        case 'n':
          out->push_back('\n');
          break;
        case 'r':
          out->push_back('\r');
          break;
        case 't':
          out->push_back('\t');
          break;
        case 'u': {
          uint32_t cp = 0;
          if (absl::Status s = ParseHex4(&cp); !s.ok()) return s;
          if (cp >= 0xDC00 && cp <= 0xDFFF) {
            return ErrorAt(escape_offset, "lone low surrogate in \\u escape");
          }
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (text_.substr(pos_, 2) != "\\u") {
              return ErrorAt(escape_offset,
                             "high surrogate not followed by a low surrogate");
            }
            pos_ += 2;
            uint32_t low = 0;
            if (absl::Status s = ParseHex4(&low); !s.ok()) return s;
            if (low < 0xDC00 || low > 0xDFFF) {
              return ErrorAt(escape_offset,
                             "high surrogate not followed by a low surrogate");
            }
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          }
          AppendUtf8(cp, out);
          break;
        }
        default:
          return ErrorAt(escape_offset,
                         absl::StrFormat("invalid escape '\\%s'", Printable(e)));
      }
    }
  }

  absl::string_view text_;
  size_t pos_ = 0;
};

}  // namespace

std::string JsonValue::Dump() const {
  std::string out;
  DumpValue(*this, &out);
  return out;
}

absl::StatusOr<JsonValue> ParseJson(absl::string_view text) {
  return Parser(text).ParseDocument();
}

}  // namespace openelm
