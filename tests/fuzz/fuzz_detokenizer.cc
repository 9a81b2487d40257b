// Fuzz target: IncrementalDetokenizer with the real Llama-2 tokenizer.
//
// Input layout: byte 0 picks the mode (bit 0: the output continues a prompt;
// bits 1-3: ids per Push, 1..8); then two bytes per id. Ids are drawn mostly
// from the byte-fallback pieces (the only ones that can form partial UTF-8),
// plus any vocabulary id and a few ids outside the vocabulary.
//
// Properties: every Push()/Flush() result is valid UTF-8; for ids inside
// the vocabulary the streamed text equals Tokenizer::Decode of the whole
// sequence, and when continuing the prompt "Hello" it equals what
// Decode([BOS, "▁Hello"] + ids) adds after "Hello".

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "engine/base/types.h"
#include "engine/tokenizer/incremental_detokenizer.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/utf8.h"
#include "tests/fuzz/fuzz_tokenizer.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

constexpr openelm::TokenId kFirstBytePiece = 3;  // <0x00>
constexpr openelm::TokenId kHello = 15043;       // "▁Hello"

const openelm::Tokenizer* g_tokenizer = nullptr;

std::string Escaped(absl::string_view s) {
  std::string out;
  char buf[8];
  for (unsigned char c : s) {
    if (c >= 0x20 && c < 0x7f) {
      out.push_back(static_cast<char>(c));
    } else {
      std::snprintf(buf, sizeof(buf), "\\x%02X", c);
      out += buf;
    }
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  g_tokenizer = openelm::testing::LoadFuzzTokenizerOrDie();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const bool continues_prompt = (data[0] & 1) != 0;
  const size_t chunk = 1 + ((data[0] >> 1) & 7);
  const int32_t vocab = g_tokenizer->vocab_size();
  std::vector<openelm::TokenId> ids;
  bool all_in_vocab = true;
  for (size_t i = 1; i + 1 < size; i += 2) {
    const uint8_t hi = data[i];
    const uint8_t lo = data[i + 1];
    openelm::TokenId id;
    if (hi >= 0x80) {
      id = kFirstBytePiece + lo;  // byte-fallback piece <0xlo>
    } else if (hi == 0x7f) {
      id = lo < 0x80 ? -1 - lo : vocab + (lo - 0x80);  // outside the vocabulary
      all_in_vocab = false;
    } else {
      id = ((hi << 8) | lo) % vocab;
    }
    ids.push_back(id);
  }

  openelm::IncrementalDetokenizer detokenizer(g_tokenizer, continues_prompt);
  std::string streamed;
  const absl::Span<const openelm::TokenId> all(ids);
  for (size_t start = 0; start < ids.size(); start += chunk) {
    const std::string delta = detokenizer.Push(all.subspan(start, chunk));
    OPENELM_FUZZ_CHECK(openelm::utf8::IsValid(delta), "Push returned invalid UTF-8: %s",
                       Escaped(delta).c_str());
    streamed += delta;
  }
  const std::string tail = detokenizer.Flush();
  OPENELM_FUZZ_CHECK(openelm::utf8::IsValid(tail), "Flush returned invalid UTF-8: %s",
                     Escaped(tail).c_str());
  streamed += tail;
  if (!all_in_vocab) return 0;

  if (!continues_prompt) {
    absl::StatusOr<std::string> want = g_tokenizer->Decode(ids);
    OPENELM_FUZZ_CHECK(want.ok(), "Decode failed: %s", want.status().ToString().c_str());
    OPENELM_FUZZ_CHECK(streamed == *want, "streamed '%s' != Decode '%s'",
                       Escaped(streamed).c_str(), Escaped(*want).c_str());
  } else {
    std::vector<openelm::TokenId> with_prompt = {g_tokenizer->bos_id(), kHello};
    with_prompt.insert(with_prompt.end(), ids.begin(), ids.end());
    absl::StatusOr<std::string> want = g_tokenizer->Decode(with_prompt);
    OPENELM_FUZZ_CHECK(want.ok(), "Decode failed: %s", want.status().ToString().c_str());
    OPENELM_FUZZ_CHECK(absl::string_view(*want).substr(0, 5) == "Hello",
                       "Decode of the prompt lost 'Hello': '%s'", Escaped(*want).c_str());
    const std::string added = want->substr(5);
    OPENELM_FUZZ_CHECK(streamed == added, "streamed '%s' != Decode adds '%s'",
                       Escaped(streamed).c_str(), Escaped(added).c_str());
  }
  return 0;
}
