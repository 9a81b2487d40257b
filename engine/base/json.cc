#include "engine/base/json.h"

#include <algorithm>
#include <cstddef>
#include <iterator>
#include <limits>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace openelm {
namespace {

using Json = nlohmann::json;

constexpr size_t kMaxDepth = 64;

// Input iterator over the text that records how far nlohmann's lexer has
// read, so that the checks in DomBuilder can report a byte offset.
class TrackingIterator {
 public:
  using iterator_category = std::input_iterator_tag;
  using value_type = char;
  using difference_type = std::ptrdiff_t;
  using pointer = const char*;
  using reference = const char&;

  TrackingIterator(const char* p, const char** read_end) : p_(p), read_end_(read_end) {}
  reference operator*() const { return *p_; }
  TrackingIterator& operator++() {
    *read_end_ = ++p_;
    return *this;
  }
  TrackingIterator operator++(int) {
    TrackingIterator old = *this;
    ++*this;
    return old;
  }
  bool operator==(const TrackingIterator& other) const { return p_ == other.p_; }

 private:
  const char* p_;
  const char** read_end_;
};

// nlohmann's messages quote the input; keep them printable ASCII.
std::string Printable(std::string_view s) {
  std::string out;
  for (const char c : s) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f) {
      out.push_back(c);
    } else {
      absl::StrAppendFormat(&out, "\\x%02x", u);
    }
  }
  return out;
}

// A SAX handler that builds the nlohmann::json document like nlohmann's own
// DOM parser, and stops at the first duplicate key or too deep nesting.
class DomBuilder {
 public:
  DomBuilder(absl::string_view text, const char* const* read_end)
      : text_(text), read_end_(read_end) {}

  bool null() { return Add(nullptr) != nullptr; }
  bool boolean(bool v) { return Add(v) != nullptr; }
  bool number_integer(Json::number_integer_t v) { return Add(v) != nullptr; }
  bool number_unsigned(Json::number_unsigned_t v) { return Add(v) != nullptr; }
  bool number_float(Json::number_float_t v, const Json::string_t& /*text*/) {
    return Add(v) != nullptr;
  }
  bool string(Json::string_t& v) { return Add(std::move(v)) != nullptr; }
  bool binary(Json::binary_t& /*v*/) {  // only the binary formats have these
    return Fail(ReadOffset(), "binary value");
  }

  bool start_object(std::size_t /*elements*/) { return Open(Json::object()); }
  bool start_array(std::size_t /*elements*/) { return Open(Json::array()); }
  bool end_object() { return Close(); }
  bool end_array() { return Close(); }

  bool key(Json::string_t& k) {
    Json& object = *open_.back();
    if (object.contains(k)) {
      return Fail(KeyOffset(), absl::StrCat("duplicate key \"", Printable(k), "\""));
    }
    member_ = &object[k];
    return true;
  }

  bool parse_error(std::size_t position, const std::string& /*last_token*/,
                   const Json::exception& ex) {
    // ex.what() is "[json.exception.<kind>.<id>] <message>", and a syntax
    // error's message starts "parse error at line L, column C: ".
    std::string_view what = ex.what();
    if (const size_t p = what.find("] "); p != what.npos) what.remove_prefix(p + 2);
    if (what.starts_with("parse error at line ")) {
      if (const size_t p = what.find(": "); p != what.npos) what.remove_prefix(p + 2);
    }
    // `position` counts the characters read, the offending one included.
    return Fail(position > 0 ? position - 1 : 0, Printable(what));
  }

  absl::StatusOr<Json> Finish(bool ok) && {
    if (!error_.ok()) return error_;
    if (!ok) return absl::InvalidArgumentError("JSON parse error");  // not reached
    return std::move(root_);
  }

 private:
  // Stores `v` as the root, the next array element or the member whose key
  // came last; returns where it went.
  Json* Add(Json v) {
    if (open_.empty()) {
      root_ = std::move(v);
      return &root_;
    }
    Json& parent = *open_.back();
    if (parent.is_array()) {
      parent.push_back(std::move(v));
      return &parent.back();
    }
    *member_ = std::move(v);
    return member_;
  }

  bool Open(Json container) {
    if (open_.size() >= kMaxDepth) {
      // The lexer has just read the opening bracket.
      return Fail(ReadOffset() - 1, "nesting deeper than 64 levels");
    }
    open_.push_back(Add(std::move(container)));
    return true;
  }

  bool Close() {
    open_.pop_back();
    return true;
  }

  size_t ReadOffset() const { return static_cast<size_t>(*read_end_ - text_.data()); }

  // Offset of the opening quote of the key just read: the lexer stopped
  // after its closing quote, and inside a valid JSON string every '"' is
  // preceded by an odd number of backslashes.
  size_t KeyOffset() const {
    const size_t closing = ReadOffset() - 1;
    for (size_t i = closing; i-- > 0;) {
      if (text_[i] != '"') continue;
      size_t backslashes = 0;
      while (backslashes < i && text_[i - 1 - backslashes] == '\\') ++backslashes;
      if (backslashes % 2 == 0) return i;
    }
    return 0;
  }

  bool Fail(size_t offset, absl::string_view what) {
    if (error_.ok()) {
      error_ = absl::InvalidArgumentError(absl::StrCat(
          "JSON parse error at byte ", std::min(offset, text_.size()), ": ", what));
    }
    return false;
  }

  const absl::string_view text_;
  const char* const* read_end_;
  Json root_;
  std::vector<Json*> open_;  // arrays and objects not yet closed, outermost first
  Json* member_ = nullptr;   // the member whose key came last
  absl::Status error_;
};

}  // namespace

absl::StatusOr<Json> ParseJson(absl::string_view text) {
  const char* read_end = text.data();
  DomBuilder builder(text, &read_end);
  bool ok = false;
  try {
    ok = Json::sax_parse(TrackingIterator(text.data(), &read_end),
                         TrackingIterator(text.data() + text.size(), &read_end), &builder,
                         Json::input_format_t::json, /*strict=*/true,
                         /*ignore_comments=*/false);
  } catch (const Json::exception& e) {  // not expected from sax_parse; never escapes
    return absl::InvalidArgumentError(
        absl::StrCat("JSON parse error: ", Printable(e.what())));
  }
  return std::move(builder).Finish(ok);
}

const Json* JsonFind(const Json& object, absl::string_view key) {
  if (!object.is_object()) return nullptr;
  const auto it = object.find(std::string_view(key.data(), key.size()));
  return it == object.end() ? nullptr : &*it;
}

std::optional<int64_t> JsonInt64(const Json& value) {
  if (value.is_number_unsigned()) {
    const uint64_t u = value.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      return std::nullopt;
    return static_cast<int64_t>(u);
  }
  if (value.is_number_integer()) return value.get<int64_t>();
  return std::nullopt;
}

std::string JsonDump(const Json& value) {
  return value.dump(/*indent=*/-1, /*indent_char=*/' ', /*ensure_ascii=*/false,
                    Json::error_handler_t::replace);
}

}  // namespace openelm
