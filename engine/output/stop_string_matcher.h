#ifndef OPENELM_ENGINE_OUTPUT_STOP_STRING_MATCHER_H_
#define OPENELM_ENGINE_OUTPUT_STOP_STRING_MATCHER_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace openelm {

// Finds stop strings in streamed text and decides how much text may be
// released. Text that could still become the start of a stop string (the
// longest suffix that is a proper prefix of some stop string) is held back;
// a matched stop string and everything after it are never released.
//
// Thread-compatible; one per completion. `stops` must outlive it.
class StopStringMatcher {
 public:
  explicit StopStringMatcher(const std::vector<std::string>* stops);

  // Appends `text` to the stream and appends the newly releasable text to
  // `out`. Returns true when a stop string matched: the text before the
  // earliest match has been released and the stream is over.
  bool Push(absl::string_view text, std::string* out);

  // End of the stream for another reason: releases the held text.
  void Flush(std::string* out);

  // The stop string that matched, or "".
  const std::string& matched() const { return matched_; }
  // Bytes currently held back (for tests).
  const std::string& held() const { return held_; }

 private:
  const std::vector<std::string>* stops_;
  std::string held_;
  std::string matched_;
  bool done_ = false;
};

}  // namespace openelm

#endif  // OPENELM_ENGINE_OUTPUT_STOP_STRING_MATCHER_H_
