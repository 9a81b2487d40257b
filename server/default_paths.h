#ifndef OPENELM_SERVER_DEFAULT_PATHS_H_
#define OPENELM_SERVER_DEFAULT_PATHS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

// Where openelm_server looks for the tokenizer when --tokenizer is not given,
// so that the default does not depend on the directory it is started from.
namespace openelm::server {

// The environment variable that names the tokenizer when --tokenizer is empty.
inline constexpr char kTokenizerEnvVar[] = "OPENELM_TOKENIZER";

// Directory of the running executable (readlink /proc/self/exe, symlinks
// resolved), or "" when it cannot be read.
std::string ExecutableDir();

// The default tokenizer locations, in the order they are tried, as
// normalized paths:
//   1. <exe_dir>/../share/openelm/tokenizer.model  (install prefix: bin/, share/)
//   2. <exe_dir>/../../../shared/tokenizer/llama2-tokenizer.model
//      (a build tree: <repo>/build/bin -> <repo>/../shared, as in development)
//   3. <working_dir>/../shared/tokenizer/llama2-tokenizer.model  (the old,
//      working-directory-relative default)
// An empty `exe_dir` leaves out 1 and 2; an empty `working_dir` keeps 3
// relative.
std::vector<std::string> DefaultTokenizerCandidates(absl::string_view exe_dir,
                                                    absl::string_view working_dir);

// The tokenizer to load when --tokenizer is empty. A non-empty `env_value`
// ($OPENELM_TOKENIZER) is an explicit choice and wins alone: it is returned
// when it names a file, and is kNotFound (naming it) when not; the defaults
// are not searched behind a broken setting. Otherwise the first
// DefaultTokenizerCandidates() entry that is a file (symlinks followed) wins;
// when none is, kNotFound lists every path looked at, in order, and says to
// pass --tokenizer or set OPENELM_TOKENIZER.
absl::StatusOr<std::string> FindDefaultTokenizer(absl::string_view env_value,
                                                 absl::string_view exe_dir,
                                                 absl::string_view working_dir);

// The same with this process' $OPENELM_TOKENIZER, ExecutableDir() and
// working directory.
absl::StatusOr<std::string> FindDefaultTokenizer();

}  // namespace openelm::server

#endif  // OPENELM_SERVER_DEFAULT_PATHS_H_
