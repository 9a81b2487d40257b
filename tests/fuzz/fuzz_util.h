#ifndef OPENELM_TESTS_FUZZ_FUZZ_UTIL_H_
#define OPENELM_TESTS_FUZZ_FUZZ_UTIL_H_

// Helpers shared by the fuzz targets in tests/fuzz. Each target defines
//   extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv);
//   extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
// and is linked either with libFuzzer (-fsanitize=fuzzer) or with
// fuzz_replay_main.cc, which replays the seed corpus and saved crash inputs
// as an ordinary ctest.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/string_view.h"

// A property the code under test must keep for every input. On violation the
// input is a bug: print why and abort so libFuzzer saves the input (and the
// replayer fails).
#define OPENELM_FUZZ_CHECK(cond, ...)                                                 \
  do {                                                                                \
    if (!(cond)) {                                                                    \
      std::fprintf(stderr, "%s:%d: fuzz property failed: %s\n  ", __FILE__, __LINE__, \
                   #cond);                                                            \
      std::fprintf(stderr, __VA_ARGS__);                                              \
      std::fprintf(stderr, "\n");                                                     \
      std::abort();                                                                   \
    }                                                                                 \
  } while (false)

namespace openelm::testing {

// A private directory under $TMPDIR (or /tmp) removed, with its files, at
// process exit. Created on first use; aborts if it cannot be created (the
// harness cannot run at all then).
const std::string& FuzzTempDir();

// Writes `bytes` to `path`, replacing it; aborts on I/O failure.
void WriteFileOrDie(const std::string& path, absl::string_view bytes);

// Path of the Llama-2 tokenizer.model: $OPENELM_TOKENIZER if set, else the
// build's OPENELM_TOKENIZER_MODEL.
std::string FuzzTokenizerPath();

}  // namespace openelm::testing

#endif  // OPENELM_TESTS_FUZZ_FUZZ_UTIL_H_
