// Runs one fuzz target without libFuzzer, as an ordinary gtest, so every
// build (gcc or clang, with or without sanitizers) replays:
//   * every file of the target's seed corpus (tests/fuzz/corpus/<target>/),
//   * every saved crash input (tests/fuzz/regressions/<target>/),
//   * a fixed set of deterministic mutations of the seeds (bit flips,
//     truncations, byte insertions), a cheap stand-in for a short fuzz run.
// A property violation aborts the process, which fails the test.
//
// The target's directories come from OPENELM_FUZZ_CORPUS_DIR and
// OPENELM_FUZZ_REGRESSION_DIR (compile definitions set in CMakeLists.txt).

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv);
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace openelm::testing {
namespace {

// Regular files directly in `dir` except dotfiles (.keep), sorted; empty when
// `dir` does not exist.
std::vector<std::string> ListFiles(const std::string& dir) {
  std::vector<std::string> files;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return files;
  while (dirent* e = readdir(d)) {
    const std::string path = absl::StrCat(dir, "/", e->d_name);
    struct stat st;
    if (e->d_name[0] != '.' && stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
      files.push_back(path);
    }
  }
  closedir(d);
  std::sort(files.begin(), files.end());
  return files;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in),
                     std::istreambuf_iterator<char>());
}

void RunOne(const std::string& bytes) {
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
}

class FuzzReplayTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    static const bool initialized = [] {
      int argc = 0;
      char** argv = nullptr;
      LLVMFuzzerInitialize(&argc, &argv);
      return true;
    }();
    (void)initialized;
  }
};

// A target's regression folder must exist (holding at least .keep), so a
// misspelt or missing folder fails here instead of replaying nothing.
TEST_F(FuzzReplayTest, RegressionFolderExists) {
  struct stat st;
  ASSERT_EQ(stat(OPENELM_FUZZ_REGRESSION_DIR, &st), 0)
      << OPENELM_FUZZ_REGRESSION_DIR << " does not exist; create it with a .keep file";
  EXPECT_TRUE(S_ISDIR(st.st_mode)) << OPENELM_FUZZ_REGRESSION_DIR << " is not a folder";
}

TEST_F(FuzzReplayTest, SeedCorpusIsPresent) {
  EXPECT_FALSE(ListFiles(OPENELM_FUZZ_CORPUS_DIR).empty())
      << "no seed files in " << OPENELM_FUZZ_CORPUS_DIR;
}

TEST_F(FuzzReplayTest, ReplaysSeedCorpus) {
  for (const std::string& path : ListFiles(OPENELM_FUZZ_CORPUS_DIR)) {
    SCOPED_TRACE(path);
    RunOne(ReadAll(path));
  }
}

TEST_F(FuzzReplayTest, ReplaysSavedCrashInputs) {
  for (const std::string& path : ListFiles(OPENELM_FUZZ_REGRESSION_DIR)) {
    SCOPED_TRACE(path);
    RunOne(ReadAll(path));
  }
}

TEST_F(FuzzReplayTest, SurvivesDeterministicMutationsOfSeeds) {
  std::mt19937_64 rng(20261130);
  constexpr int kMutationsPerSeed = 64;
  for (const std::string& path : ListFiles(OPENELM_FUZZ_CORPUS_DIR)) {
    SCOPED_TRACE(path);
    const std::string seed = ReadAll(path);
    for (int i = 0; i < kMutationsPerSeed; ++i) {
      std::string input = seed;
      const int edits = 1 + static_cast<int>(rng() % 4);
      for (int e = 0; e < edits; ++e) {
        const size_t pos = input.empty() ? 0 : rng() % input.size();
        switch (rng() % 4) {
          case 0:  // flip a bit
            if (!input.empty()) input[pos] ^= static_cast<char>(1u << (rng() % 8));
            break;
          case 1:  // truncate
            input.resize(pos);
            break;
          case 2:  // insert a byte
            input.insert(input.begin() + static_cast<std::ptrdiff_t>(pos),
                         static_cast<char>(rng() & 0xff));
            break;
          default:  // overwrite with an interesting byte
            if (!input.empty()) {
              static constexpr char kBytes[] = {'\0',   '"',    '{', '}', '[',
                                                ']',    ',',    '9', '-', '\\',
                                                '\xff', '\x80', 'e', '.'};
              input[pos] = kBytes[rng() % sizeof(kBytes)];
            }
            break;
        }
      }
      RunOne(input);
    }
  }
}

}  // namespace
}  // namespace openelm::testing
