#ifndef OPENELM_TESTS_TESTING_RECORDING_SINK_H_
#define OPENELM_TESTS_TESTING_RECORDING_SINK_H_

#include <map>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "engine/llm_engine.h"

namespace openelm::testing {

// A TokenSink that records everything and checks the sink contract: no
// OnOutput after OnFinish, OnFinish exactly once.
//
// Thread-safe: the engine thread writes, the test thread reads.
class RecordingSink : public TokenSink {
 public:
  void OnOutput(const OutputDelta& delta) override {
    absl::MutexLock lock(&mu_);
    if (num_finish_calls_ > 0) ++contract_violations_;
    deltas_.push_back(delta);
    auto& tokens = tokens_[delta.index];
    tokens.insert(tokens.end(), delta.tokens.begin(), delta.tokens.end());
    text_[delta.index] += delta.text;
  }
  void OnFinish(const FinishInfo& info) override {
    absl::MutexLock lock(&mu_);
    if (++num_finish_calls_ > 1) {
      ++contract_violations_;
      return;
    }
    info_ = info;
    done_.Notify();
  }

  bool WaitForFinish(absl::Duration timeout) {
    return done_.WaitForNotificationWithTimeout(timeout);
  }
  bool finished() const { return done_.HasBeenNotified(); }

  std::vector<TokenId> tokens(int index = 0) const {
    absl::MutexLock lock(&mu_);
    auto it = tokens_.find(index);
    return it == tokens_.end() ? std::vector<TokenId>() : it->second;
  }
  std::string text(int index = 0) const {
    absl::MutexLock lock(&mu_);
    auto it = text_.find(index);
    return it == text_.end() ? std::string() : it->second;
  }
  std::vector<OutputDelta> deltas() const {
    absl::MutexLock lock(&mu_);
    return deltas_;
  }
  FinishInfo info() const {
    absl::MutexLock lock(&mu_);
    return info_;
  }
  int num_finish_calls() const {
    absl::MutexLock lock(&mu_);
    return num_finish_calls_;
  }
  int contract_violations() const {
    absl::MutexLock lock(&mu_);
    return contract_violations_;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<OutputDelta> deltas_ ABSL_GUARDED_BY(mu_);
  std::map<int, std::vector<TokenId>> tokens_ ABSL_GUARDED_BY(mu_);
  std::map<int, std::string> text_ ABSL_GUARDED_BY(mu_);
  FinishInfo info_ ABSL_GUARDED_BY(mu_);
  int num_finish_calls_ ABSL_GUARDED_BY(mu_) = 0;
  int contract_violations_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Notification done_;
};

}  // namespace openelm::testing

#endif  // OPENELM_TESTS_TESTING_RECORDING_SINK_H_
