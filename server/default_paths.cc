#include "server/default_paths.h"

#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace openelm::server {
namespace {

// `dir`/`relative`, lexically normalized ("a/bin/../share" -> "a/share").
// Safe for ExecutableDir() and getcwd(), which have no symlinks left in them.
std::string JoinNormal(absl::string_view dir, absl::string_view relative) {
  if (dir.empty()) return std::string(relative);
  return (std::filesystem::path(std::string(dir)) / std::string(relative))
      .lexically_normal()
      .string();
}

bool IsFile(const std::string& path) {
  std::error_code ec;
  return std::filesystem::is_regular_file(path, ec);
}

}  // namespace

std::string ExecutableDir() {
  std::error_code ec;
  const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec || exe.empty()) return "";
  return exe.parent_path().string();
}

std::vector<std::string> DefaultTokenizerCandidates(absl::string_view exe_dir,
                                                    absl::string_view working_dir) {
  std::vector<std::string> candidates;
  if (!exe_dir.empty()) {
    candidates.push_back(JoinNormal(exe_dir, "../share/openelm/tokenizer.model"));
    candidates.push_back(
        JoinNormal(exe_dir, "../../../shared/tokenizer/llama2-tokenizer.model"));
  }
  candidates.push_back(
      JoinNormal(working_dir, "../shared/tokenizer/llama2-tokenizer.model"));
  return candidates;
}

absl::StatusOr<std::string> FindDefaultTokenizer(absl::string_view env_value,
                                                 absl::string_view exe_dir,
                                                 absl::string_view working_dir) {
  if (!env_value.empty()) {
    const std::string path(env_value);
    if (IsFile(path)) return path;
    return absl::NotFoundError(absl::StrCat(
        "tokenizer not found: ", kTokenizerEnvVar, "=", path,
        " is not a file; fix or unset ", kTokenizerEnvVar,
        " (unset, the default locations are searched), or pass --tokenizer=FILE"));
  }
  const std::vector<std::string> candidates =
      DefaultTokenizerCandidates(exe_dir, working_dir);
  for (const std::string& path : candidates) {
    if (IsFile(path)) return path;
  }
  return absl::NotFoundError(absl::StrCat(
      "no tokenizer: --tokenizer is not given, ", kTokenizerEnvVar,
      " is not set, and none of the default locations holds one; looked in, in order: ",
      absl::StrJoin(candidates, ", "), ". Pass --tokenizer=FILE or set ",
      kTokenizerEnvVar, "=FILE (Llama-2's tokenizer.model)"));
}

absl::StatusOr<std::string> FindDefaultTokenizer() {
  const char* env = std::getenv(kTokenizerEnvVar);
  std::error_code ec;
  std::string cwd = std::filesystem::current_path(ec).string();
  if (ec) cwd.clear();
  return FindDefaultTokenizer(env == nullptr ? "" : env, ExecutableDir(), cwd);
}

}  // namespace openelm::server
