#ifndef OPENELM_TESTS_TESTING_ENGINE_HARNESS_H_
#define OPENELM_TESTS_TESTING_ENGINE_HARNESS_H_

#include <map>
#include <memory>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "engine/llm_engine.h"
#include "gtest/gtest.h"
#include "tests/testing/fake_decoder.h"
#include "tests/testing/recording_sink.h"

namespace openelm::testing {

// Records every StepStats and finished request.
class RecordingObserver : public EngineObserver {
 public:
  void OnStep(const StepStats& stats) override {
    absl::MutexLock lock(&mu_);
    steps_.push_back(stats);
  }
  void OnRequestFinished(const GenerateSpec&, const FinishInfo&) override {
    absl::MutexLock lock(&mu_);
    ++num_finished_;
  }
  std::vector<StepStats> steps() const {
    absl::MutexLock lock(&mu_);
    return steps_;
  }
  int num_finished() const {
    absl::MutexLock lock(&mu_);
    return num_finished_;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<StepStats> steps_ ABSL_GUARDED_BY(mu_);
  int num_finished_ ABSL_GUARDED_BY(mu_) = 0;
};

// An LlmEngine over a FakeDecoder, driven step by step (puppet mode) unless
// options.start_thread is set. Owns the sinks.
class EngineHarness {
 public:
  explicit EngineHarness(EngineOptions options, FakeDecoderOptions fake_options = {},
                         const Tokenizer* tokenizer = nullptr,
                         bool start_thread = false) {
    auto fake = std::make_unique<FakeDecoder>(fake_options);
    fake_ = fake.get();
    options.start_thread = start_thread;
    auto engine = LlmEngine::Create(options, std::move(fake), tokenizer, &observer_);
    EXPECT_TRUE(engine.ok()) << engine.status();
    if (engine.ok()) engine_ = *std::move(engine);
  }

  LlmEngine& engine() { return *engine_; }
  FakeDecoder& fake() { return *fake_; }
  RecordingObserver& observer() { return observer_; }

  absl::Status Submit(RequestId id, GenerateSpec spec) {
    auto sink = std::make_unique<RecordingSink>();
    absl::Status status = engine_->Submit(id, std::move(spec), sink.get());
    if (status.ok()) sinks_[id] = std::move(sink);
    return status;
  }
  RecordingSink& sink(RequestId id) { return *sinks_.at(id); }

  bool AllFinished() const {
    for (const auto& [id, sink] : sinks_) {
      if (!sink->finished()) return false;
    }
    return true;
  }
  // Steps until every submitted request finished; false after `max_steps`.
  bool RunUntilDone(int max_steps = 10000) {
    for (int i = 0; i < max_steps; ++i) {
      if (AllFinished()) return true;
      EXPECT_TRUE(engine_->StepForTesting().ok());
    }
    return AllFinished();
  }
  void Step(int n = 1) {
    for (int i = 0; i < n; ++i) EXPECT_TRUE(engine_->StepForTesting().ok());
  }
  // Every block is free again (cached blocks count as free).
  void ExpectPoolFull() {
    const EngineLoad load = engine_->load();
    EXPECT_EQ(load.num_free_blocks, load.num_blocks);
    EXPECT_EQ(load.num_running, 0);
    EXPECT_EQ(load.num_waiting, 0);
  }
  void ExpectNoViolations() {
    for (const std::string& v : fake_->violations()) ADD_FAILURE() << v;
    for (const auto& [id, sink] : sinks_) {
      EXPECT_EQ(sink->contract_violations(), 0) << "request " << id;
      if (sink->finished()) {
        EXPECT_EQ(sink->num_finish_calls(), 1) << "request " << id;
      }
    }
  }

 private:
  // Declaration order matters: the engine (destroyed first) may still call
  // sinks and the observer while it shuts down.
  RecordingObserver observer_;
  std::map<RequestId, std::unique_ptr<RecordingSink>> sinks_;
  FakeDecoder* fake_ = nullptr;
  std::unique_ptr<LlmEngine> engine_;
};

inline GenerateSpec Spec(std::vector<TokenId> prompt, int32_t max_tokens,
                         float temperature = 0.0f) {
  GenerateSpec spec;
  spec.prompt = std::move(prompt);
  spec.params.max_tokens = max_tokens;
  spec.params.temperature = temperature;
  return spec;
}

inline std::vector<TokenId> Prompt(int n, TokenId salt = 0) {
  std::vector<TokenId> p;
  p.push_back(kBosTokenId);
  for (int i = 1; i < n; ++i) p.push_back(3 + (i * 7 + salt * 13) % 100);
  return p;
}

}  // namespace openelm::testing

#endif  // OPENELM_TESTS_TESTING_ENGINE_HARNESS_H_
