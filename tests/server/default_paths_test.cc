// Where openelm_server finds its tokenizer without --tokenizer
// (server/default_paths.h): the candidate order, the $OPENELM_TOKENIZER
// override, and a NOT_FOUND that lists every path looked at. Files live in a
// temporary directory; the real tokenizer is never touched.
#include "server/default_paths.h"

#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/server/server_test_util.h"
#include "tests/testing/status_matchers.h"

namespace openelm::server {
namespace {

using ::openelm::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

MATCHER_P(HoldsPath, path, "is OK and holds " + std::string(path)) {
  if (!arg.ok()) {
    *result_listener << "status " << arg.status();
    return false;
  }
  *result_listener << "holds " << *arg;
  return *arg == path;
}

void Touch(const std::string& path) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream(path) << "x";
}

// A layout under a temporary root R: R/repo/build/bin is the binary's
// directory and R/run/dir the working directory, so that each candidate is
// a different path.
class DefaultTokenizerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = dir_.path();
    exe_dir_ = root_ + "/repo/build/bin";
    cwd_ = root_ + "/run/dir";
    std::filesystem::create_directories(exe_dir_);
    std::filesystem::create_directories(cwd_);
  }

  std::string Install() const {
    return root_ + "/repo/build/share/openelm/tokenizer.model";
  }
  std::string BuildTree() const {
    return root_ + "/shared/tokenizer/llama2-tokenizer.model";
  }
  std::string FromCwd() const {
    return root_ + "/run/shared/tokenizer/llama2-tokenizer.model";
  }

  openelm::testing::TempDir dir_;
  std::string root_, exe_dir_, cwd_;
};

TEST_F(DefaultTokenizerTest, CandidatesAreNormalizedAndInOrder) {
  EXPECT_THAT(DefaultTokenizerCandidates(exe_dir_, cwd_),
              ElementsAre(Install(), BuildTree(), FromCwd()));
  // The image's layout (/opt/openelm/bin) and this repository's (build/bin).
  EXPECT_THAT(DefaultTokenizerCandidates("/opt/openelm/bin", "/srv/app"),
              ElementsAre("/opt/openelm/share/openelm/tokenizer.model",
                          "/shared/tokenizer/llama2-tokenizer.model",
                          "/srv/shared/tokenizer/llama2-tokenizer.model"));
  EXPECT_THAT(DefaultTokenizerCandidates("/work/main/build/bin", "/"),
              ElementsAre("/work/main/build/share/openelm/tokenizer.model",
                          "/work/shared/tokenizer/llama2-tokenizer.model",
                          "/shared/tokenizer/llama2-tokenizer.model"));
  // Without the executable's directory only the working-directory one is left.
  EXPECT_THAT(DefaultTokenizerCandidates("", "/srv/app"),
              ElementsAre("/srv/shared/tokenizer/llama2-tokenizer.model"));
  EXPECT_THAT(DefaultTokenizerCandidates("", ""),
              ElementsAre("../shared/tokenizer/llama2-tokenizer.model"));
}

TEST_F(DefaultTokenizerTest, FirstExistingCandidateWins) {
  Touch(FromCwd());
  EXPECT_THAT(FindDefaultTokenizer("", exe_dir_, cwd_), HoldsPath(FromCwd()));
  Touch(BuildTree());
  EXPECT_THAT(FindDefaultTokenizer("", exe_dir_, cwd_), HoldsPath(BuildTree()));
  Touch(Install());
  EXPECT_THAT(FindDefaultTokenizer("", exe_dir_, cwd_), HoldsPath(Install()));
}

TEST_F(DefaultTokenizerTest, DirectoriesDoNotCount) {
  std::filesystem::create_directories(Install());  // a directory named tokenizer.model
  Touch(BuildTree());
  EXPECT_THAT(FindDefaultTokenizer("", exe_dir_, cwd_), HoldsPath(BuildTree()));
}

TEST_F(DefaultTokenizerTest, SymlinkToTheTokenizerCounts) {
  const std::string real = root_ + "/elsewhere/tok.model";
  Touch(real);
  std::filesystem::create_directories(std::filesystem::path(Install()).parent_path());
  std::filesystem::create_symlink(real, Install());
  EXPECT_THAT(FindDefaultTokenizer("", exe_dir_, cwd_), HoldsPath(Install()));
}

TEST_F(DefaultTokenizerTest, EnvironmentOverridesEveryDefault) {
  Touch(Install());
  Touch(BuildTree());
  const std::string chosen = root_ + "/chosen.model";
  Touch(chosen);
  EXPECT_THAT(FindDefaultTokenizer(chosen, exe_dir_, cwd_), HoldsPath(chosen));
}

TEST_F(DefaultTokenizerTest, MissingEnvironmentFileIsNotFoundAndNotReplaced) {
  Touch(Install());  // a default exists, but the explicit setting is broken
  const std::string missing = root_ + "/no_such.model";
  EXPECT_THAT(FindDefaultTokenizer(missing, exe_dir_, cwd_),
              StatusIs(absl::StatusCode::kNotFound,
                       AllOf(HasSubstr(absl::StrCat("OPENELM_TOKENIZER=", missing)),
                             HasSubstr("--tokenizer"))));
}

TEST_F(DefaultTokenizerTest, NoneFoundListsEveryCandidateInOrder) {
  const absl::StatusOr<std::string> found = FindDefaultTokenizer("", exe_dir_, cwd_);
  ASSERT_THAT(found, StatusIs(absl::StatusCode::kNotFound));
  const std::string message(found.status().message());
  size_t last = 0;
  for (const std::string& candidate : DefaultTokenizerCandidates(exe_dir_, cwd_)) {
    const size_t at = message.find(candidate, last);
    ASSERT_NE(at, std::string::npos) << candidate << " not (in order) in: " << message;
    last = at + candidate.size();
  }
  EXPECT_THAT(message, HasSubstr("--tokenizer"));
  EXPECT_THAT(message, HasSubstr("OPENELM_TOKENIZER"));
}

TEST(ExecutableDirTest, IsThisTestBinarysDirectory) {
  const std::string dir = ExecutableDir();
  ASSERT_FALSE(dir.empty());
  EXPECT_TRUE(std::filesystem::exists(dir + "/default_paths_test")) << dir;
}

TEST(FindDefaultTokenizerTest, ReadsTheEnvironment) {
  openelm::testing::TempDir dir;
  const std::string chosen = dir.path() + "/t.model";
  Touch(chosen);
  const char* old = std::getenv("OPENELM_TOKENIZER");
  const std::string saved = old == nullptr ? "" : old;
  ASSERT_EQ(setenv("OPENELM_TOKENIZER", chosen.c_str(), 1), 0);
  EXPECT_THAT(FindDefaultTokenizer(), HoldsPath(chosen));
  ASSERT_EQ(setenv("OPENELM_TOKENIZER", (chosen + ".missing").c_str(), 1), 0);
  EXPECT_THAT(FindDefaultTokenizer(), StatusIs(absl::StatusCode::kNotFound));
  if (old == nullptr) {
    unsetenv("OPENELM_TOKENIZER");
  } else {
    setenv("OPENELM_TOKENIZER", saved.c_str(), 1);
  }
}

}  // namespace
}  // namespace openelm::server
