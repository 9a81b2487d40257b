// Fuzz target: Tokenizer::Encode with the real Llama-2 tokenizer.
//
// Input layout: byte 0 bit 0 = add_bos; the rest is the text (any bytes).
//
// Properties: never crashes; invalid UTF-8 is kInvalidArgument and valid
// UTF-8 is accepted; accepted ids are inside the vocabulary, start with BOS
// exactly when asked, and decode back to the input text (the Llama-2 model
// normalises nothing and has byte fallback, so the round trip is exact) except
// that U+2581 LOWER ONE EIGHTH BLOCK comes back as a space: it is
// SentencePiece's own symbol for a space, so "a\u2581b" and "a b" are the same
// pieces, in the reference tokenizer too (a fuzz finding; the input is kept
// in tests/fuzz/regressions/tokenizer_encode/).

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "engine/base/types.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/utf8.h"
#include "tests/fuzz/fuzz_tokenizer.h"
#include "tests/fuzz/fuzz_util.h"

namespace {
const openelm::Tokenizer* g_tokenizer = nullptr;
}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  g_tokenizer = openelm::testing::LoadFuzzTokenizerOrDie();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const bool add_bos = (data[0] & 1) != 0;
  const absl::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  absl::StatusOr<std::vector<openelm::TokenId>> ids = g_tokenizer->Encode(text, add_bos);
  if (!openelm::utf8::IsValid(text)) {
    OPENELM_FUZZ_CHECK(
        !ids.ok() && ids.status().code() == absl::StatusCode::kInvalidArgument,
        "invalid UTF-8 gave %s", ids.status().ToString().c_str());
    return 0;
  }
  OPENELM_FUZZ_CHECK(ids.ok(), "valid UTF-8 rejected: %s",
                     ids.status().ToString().c_str());
  const std::vector<openelm::TokenId>& v = *ids;
  for (openelm::TokenId id : v) {
    OPENELM_FUZZ_CHECK(id >= 0 && id < g_tokenizer->vocab_size(), "id %d outside vocab",
                       id);
  }
  if (add_bos) {
    OPENELM_FUZZ_CHECK(!v.empty() && v[0] == g_tokenizer->bos_id(), "BOS missing");
  }
  const size_t first = add_bos ? 1 : 0;
  for (size_t i = first; i < v.size(); ++i) {
    OPENELM_FUZZ_CHECK(v[i] != g_tokenizer->bos_id(), "BOS inside the text at %zu", i);
  }
  absl::StatusOr<std::string> back = g_tokenizer->Decode(v);
  OPENELM_FUZZ_CHECK(back.ok(), "Decode failed: %s", back.status().ToString().c_str());
  const std::string expected = absl::StrReplaceAll(text, {{"\xe2\x96\x81", " "}});
  OPENELM_FUZZ_CHECK(*back == expected, "round trip changed the text (%zu -> %zu bytes)",
                     text.size(), back->size());
  return 0;
}
