#ifndef OPENELM_ENGINE_BASE_FILE_UTIL_H_
#define OPENELM_ENGINE_BASE_FILE_UTIL_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace openelm {

// `dir`/`name` (no doubled slash).
std::string JoinPath(const std::string& dir, absl::string_view name);
// True when `path` is a regular file (symlinks followed).
bool FileExists(const std::string& path);
// The whole file (for small files: configs, indexes). kNotFound when it
// cannot be opened, kDataLoss on a read error; both name the path.
absl::StatusOr<std::string> ReadSmallFile(const std::string& path);

}  // namespace openelm

#endif  // OPENELM_ENGINE_BASE_FILE_UTIL_H_
