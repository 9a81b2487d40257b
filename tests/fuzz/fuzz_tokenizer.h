#ifndef OPENELM_TESTS_FUZZ_FUZZ_TOKENIZER_H_
#define OPENELM_TESTS_FUZZ_FUZZ_TOKENIZER_H_

// The tokenizer of the fuzz targets that need one (those linking
// openelm_tokenizer): loaded once from FuzzTokenizerPath() in
// LLVMFuzzerInitialize and kept for the life of the process.

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/tokenizer/tokenizer.h"
#include "tests/fuzz/fuzz_util.h"

namespace openelm::testing {

// Aborts, naming the file and the error, when the tokenizer cannot be loaded
// (no input could be checked then). Never freed: targets use it until exit.
inline const Tokenizer* LoadFuzzTokenizerOrDie() {
  const std::string path = FuzzTokenizerPath();
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = Tokenizer::Load(path);
  if (!tokenizer.ok()) {
    std::fprintf(stderr, "cannot load %s: %s\n", path.c_str(),
                 tokenizer.status().ToString().c_str());
    std::abort();
  }
  return tokenizer->release();
}

}  // namespace openelm::testing

#endif  // OPENELM_TESTS_FUZZ_FUZZ_TOKENIZER_H_
