#include "engine/output/stop_string_matcher.h"

#include <algorithm>

namespace openelm {

StopStringMatcher::StopStringMatcher(const std::vector<std::string>* stops)
    : stops_(stops) {}

bool StopStringMatcher::Push(absl::string_view text, std::string* out) {
  if (done_) return true;
  held_.append(text.data(), text.size());
  if (stops_ == nullptr || stops_->empty()) {
    out->append(held_);
    held_.clear();
    return false;
  }
  // Earliest complete match wins. Released text can never contain the start
  // of a match (that start would have been held), so searching held_ suffices.
  size_t best = std::string::npos;
  const std::string* best_stop = nullptr;
  for (const std::string& stop : *stops_) {
    const size_t pos = held_.find(stop);
    if (pos != std::string::npos && (best == std::string::npos || pos < best)) {
      best = pos;
      best_stop = &stop;
    }
  }
  if (best_stop != nullptr) {
    out->append(held_, 0, best);
    matched_ = *best_stop;
    held_.clear();
    done_ = true;
    return true;
  }
  // Hold the longest suffix of held_ that is a proper prefix of a stop string.
  size_t hold = 0;
  for (const std::string& stop : *stops_) {
    const size_t max_k = std::min(held_.size(), stop.size() - 1);
    for (size_t k = max_k; k > hold; --k) {
      if (held_.compare(held_.size() - k, k, stop, 0, k) == 0) {
        hold = k;
        break;
      }
    }
  }
  out->append(held_, 0, held_.size() - hold);
  held_.erase(0, held_.size() - hold);
  return false;
}

void StopStringMatcher::Flush(std::string* out) {
  if (done_) return;
  out->append(held_);
  held_.clear();
  done_ = true;
}

}  // namespace openelm
