#include "engine/tokenizer/utf8.h"

#include <cstdint>
#include <string>

namespace openelm::utf8 {
namespace {

bool IsContinuation(unsigned char byte) { return (byte & 0xC0) == 0x80; }

// Number of bytes a sequence starting with `lead` announces; 0 for bytes
// that cannot start a sequence (continuation bytes, 0xF8..0xFF).
size_t AnnouncedLength(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead & 0xE0) == 0xC0) return 2;
  if ((lead & 0xF0) == 0xE0) return 3;
  if ((lead & 0xF8) == 0xF0) return 4;
  return 0;
}

}  // namespace

size_t ValidCharLength(absl::string_view text) {
  if (text.empty()) return 0;
  const unsigned char lead = static_cast<unsigned char>(text[0]);
  const size_t length = AnnouncedLength(lead);
  if (length == 0 || text.size() < length) return 0;
  if (length == 1) return 1;
  uint32_t code_point = lead & (0x7F >> length);
  for (size_t i = 1; i < length; ++i) {
    const unsigned char byte = static_cast<unsigned char>(text[i]);
    if (!IsContinuation(byte)) return 0;
    code_point = (code_point << 6) | (byte & 0x3F);
  }
  // Smallest code point each length may encode (rejects overlong forms).
  static constexpr uint32_t kMinCodePoint[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (code_point < kMinCodePoint[length]) return 0;
  if (code_point >= 0xD800 && code_point <= 0xDFFF) return 0;  // surrogates
  if (code_point > 0x10FFFF) return 0;
  return length;
}

bool IsIncompletePrefix(absl::string_view text) {
  if (text.empty()) return false;
  const size_t length = AnnouncedLength(static_cast<unsigned char>(text[0]));
  if (length < 2 || text.size() >= length) return false;
  for (size_t i = 1; i < text.size(); ++i) {
    if (!IsContinuation(static_cast<unsigned char>(text[i]))) return false;
  }
  return true;
}

std::string ReplaceInvalid(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  while (!text.empty()) {
    const size_t n = ValidCharLength(text);
    if (n == 0) {
      out.append(kReplacementCharacter.data(), kReplacementCharacter.size());
      text.remove_prefix(1);
    } else {
      out.append(text.data(), n);
      text.remove_prefix(n);
    }
  }
  return out;
}

absl::string_view Prefix(absl::string_view text, size_t max_bytes) {
  if (text.size() <= max_bytes) return text;
  size_t cut = max_bytes;
  // Back off continuation bytes (10xxxxxx) so the cut falls before a lead.
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
  return text.substr(0, cut);
}

bool IsValid(absl::string_view text) {
  while (!text.empty()) {
    const size_t length = ValidCharLength(text);
    if (length == 0) return false;
    text.remove_prefix(length);
  }
  return true;
}

}  // namespace openelm::utf8
