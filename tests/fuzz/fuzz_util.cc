#include "tests/fuzz/fuzz_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace openelm::testing {
namespace {

std::string* g_temp_dir = nullptr;

// Removes the harness directory (flat: the harnesses only write files and
// one level of sub-directories).
void RemoveTree(const std::string& dir) {
  if (DIR* d = opendir(dir.c_str()); d != nullptr) {
    while (dirent* e = readdir(d)) {
      const absl::string_view name = e->d_name;
      if (name == "." || name == "..") continue;
      const std::string path = absl::StrCat(dir, "/", name);
      struct stat st;
      if (lstat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
        RemoveTree(path);
      } else {
        unlink(path.c_str());
      }
    }
    closedir(d);
  }
  rmdir(dir.c_str());
}

void RemoveTempDirAtExit() {
  if (g_temp_dir != nullptr) RemoveTree(*g_temp_dir);
}

}  // namespace

const std::string& FuzzTempDir() {
  if (g_temp_dir == nullptr) {
    const char* base = std::getenv("TMPDIR");
    std::string pattern = absl::StrCat(base != nullptr && *base != '\0' ? base : "/tmp",
                                       "/openelm_fuzz_XXXXXX");
    if (mkdtemp(pattern.data()) == nullptr) {
      std::fprintf(stderr, "mkdtemp(%s): %s\n", pattern.c_str(), std::strerror(errno));
      std::abort();
    }
    g_temp_dir = new std::string(pattern);
    std::atexit(RemoveTempDirAtExit);
  }
  return *g_temp_dir;
}

void WriteFileOrDie(const std::string& path, absl::string_view bytes) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    std::fprintf(stderr, "open(%s): %s\n", path.c_str(), std::strerror(errno));
    std::abort();
  }
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      std::fprintf(stderr, "write(%s): %s\n", path.c_str(), std::strerror(errno));
      std::abort();
    }
    done += static_cast<size_t>(n);
  }
  close(fd);
}

std::string FuzzTokenizerPath() {
  if (const char* env = std::getenv("OPENELM_TOKENIZER");
      env != nullptr && *env != '\0') {
    return env;
  }
  return OPENELM_FUZZ_TOKENIZER_MODEL;
}

}  // namespace openelm::testing
