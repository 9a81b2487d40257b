#include "engine/output/output_processor.h"

#include <string>
#include <utility>

#include "engine/base/check.h"

namespace openelm {
namespace {

// Reasons after which the text held back (an incomplete UTF-8 character, a
// possible start of a stop string) is still delivered.
bool KeepsText(FinishReason reason) {
  switch (reason) {
    case FinishReason::kEos:
    case FinishReason::kStopToken:
    case FinishReason::kLength:
    case FinishReason::kContextLength:
    case FinishReason::kDeadline:
      return true;
    default:
      return false;
  }
}

}  // namespace

OutputProcessor::OutputProcessor(const Tokenizer* tokenizer) : tokenizer_(tokenizer) {}

void OutputProcessor::Add(const Request& request) {
  if (tokenizer_ == nullptr) return;
  std::vector<std::unique_ptr<CompletionText>> texts;
  const int32_t n = std::max(request.spec.params.n, 1);
  texts.reserve(n);
  for (int32_t i = 0; i < n; ++i) {
    texts.push_back(std::make_unique<CompletionText>(tokenizer_, request));
  }
  texts_[request.id] = std::move(texts);
}

void OutputProcessor::Forget(RequestId id) { texts_.erase(id); }

void OutputProcessor::Process(Scheduler* scheduler, absl::Time now) {
  if (tokenizer_ == nullptr) return;
  // By index: StopSequence may finish a request, which only re-touches it.
  const std::vector<Request*>& touched = scheduler->touched();
  for (size_t i = 0; i < touched.size(); ++i) {
    Request* r = touched[i];
    auto it = texts_.find(r->id);
    if (it == texts_.end()) continue;
    std::vector<std::unique_ptr<CompletionText>>& texts = it->second;
    for (Sequence& s : r->seqs) {
      OPENELM_CHECK(static_cast<size_t>(s.index) < texts.size());
      CompletionText& text = *texts[s.index];
      if (text.done) continue;
      for (TokenId token : s.delta.tokens) {
        const std::string piece = text.detokenizer.Push({&token, 1});
        if (text.matcher.Push(piece, &s.delta.text)) {
          text.done = true;
          scheduler->StopSequence(r, &s, now);
          break;
        }
      }
      if (text.done || !s.finished) continue;
      text.done = true;
      if (!KeepsText(s.finish_reason)) continue;
      const std::string tail = text.detokenizer.Flush();
      if (text.matcher.Push(tail, &s.delta.text)) {
        scheduler->StopSequence(r, &s, now);
      } else {
        text.matcher.Flush(&s.delta.text);
      }
    }
  }
  for (const std::unique_ptr<Request>& r : scheduler->finished()) {
    auto it = texts_.find(r->id);
    if (it == texts_.end()) continue;
    for (CompletionFinish& c : r->finish.completions) {
      if (static_cast<size_t>(c.index) < it->second.size()) {
        c.stop_matched = it->second[c.index]->matcher.matched();
      }
    }
  }
}

}  // namespace openelm
