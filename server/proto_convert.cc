#include "server/proto_convert.h"

#include <cstdint>

namespace openelm::server {
namespace {

void FillLogprob(const TokenLogprob& lp, const Tokenizer* tokenizer,
                 v1::TokenLogprob* out) {
  out->set_token_id(lp.token);
  out->set_logprob(lp.logprob);
  if (tokenizer != nullptr && lp.token >= 0 && lp.token < tokenizer->vocab_size()) {
    out->set_text(tokenizer->IdToPiece(lp.token));
  }
}

// `entry` is the chosen token first, then the top alternatives.
int64_t FillPosition(const std::vector<TokenLogprob>& entry, const Tokenizer* tokenizer,
                     v1::PositionLogprobs* out) {
  if (entry.empty()) return 0;
  FillLogprob(entry.front(), tokenizer, out->mutable_chosen());
  for (size_t k = 1; k < entry.size(); ++k) {
    FillLogprob(entry[k], tokenizer, out->add_top());
  }
  return static_cast<int64_t>(entry.size()) * 24;
}

}  // namespace

v1::FinishReason ToProtoFinishReason(FinishReason reason) {
  switch (reason) {
    case FinishReason::kUnspecified:
      return v1::FINISH_REASON_UNSPECIFIED;
    case FinishReason::kEos:
      return v1::FINISH_REASON_EOS;
    case FinishReason::kLength:
      return v1::FINISH_REASON_LENGTH;
    case FinishReason::kStopSequence:
      return v1::FINISH_REASON_STOP_SEQUENCE;
    case FinishReason::kStopToken:
      return v1::FINISH_REASON_STOP_TOKEN;
    case FinishReason::kContextLength:
      return v1::FINISH_REASON_CONTEXT_LENGTH;
    case FinishReason::kCancelled:
      return v1::FINISH_REASON_CANCELLED;
    case FinishReason::kDeadline:
      return v1::FINISH_REASON_DEADLINE;
    case FinishReason::kError:
      return v1::FINISH_REASON_ERROR;
    case FinishReason::kShutdown:
      return v1::FINISH_REASON_SHUTDOWN;
  }
  return v1::FINISH_REASON_UNSPECIFIED;
}

void ToProtoDuration(absl::Duration d, google::protobuf::Duration* out) {
  if (d < absl::ZeroDuration() || d == absl::InfiniteDuration()) {
    d = absl::ZeroDuration();
  }
  const int64_t seconds = absl::IDivDuration(d, absl::Seconds(1), &d);
  out->set_seconds(seconds);
  out->set_nanos(static_cast<int32_t>(absl::ToInt64Nanoseconds(d)));
}

v1::Choice* FindOrAddChoice(int32_t index, v1::GenerateResponse* response) {
  for (v1::Choice& choice : *response->mutable_choices()) {
    if (choice.index() == index) return &choice;
  }
  v1::Choice* choice = response->add_choices();
  choice->set_index(index);
  return choice;
}

int64_t AppendDelta(const OutputDelta& delta, const Tokenizer* tokenizer,
                    v1::GenerateResponse* response) {
  v1::Choice* choice = FindOrAddChoice(delta.index, response);
  choice->mutable_text()->append(delta.text);
  int64_t bytes = static_cast<int64_t>(delta.text.size()) + 8;
  for (TokenId id : delta.tokens) choice->add_token_ids(id);
  bytes += static_cast<int64_t>(delta.tokens.size()) * 5;
  for (const std::vector<TokenLogprob>& entry : delta.logprobs) {
    bytes += FillPosition(entry, tokenizer, choice->add_logprobs());
  }
  return bytes;
}

void AppendFinish(const FinishInfo& info, const std::vector<TokenId>& prompt,
                  const Tokenizer* tokenizer, v1::GenerateResponse* response) {
  for (const CompletionFinish& c : info.completions) {
    v1::Choice* choice = FindOrAddChoice(c.index, response);
    choice->set_finish_reason(ToProtoFinishReason(c.reason));
    if (!c.stop_matched.empty()) choice->set_stop_sequence(c.stop_matched);
  }
  v1::Usage* usage = response->mutable_usage();
  usage->set_prompt_tokens(info.num_prompt_tokens);
  usage->set_completion_tokens(info.num_output_tokens);
  usage->set_cached_tokens(info.num_cached_tokens);
  usage->set_preemptions(info.num_preemptions);

  const RequestTimings& t = info.timings;
  v1::Timings* timings = response->mutable_timings();
  if (t.first_scheduled > t.arrival) {
    ToProtoDuration(t.first_scheduled - t.arrival, timings->mutable_queue_time());
  }
  if (t.first_token > t.arrival) {
    ToProtoDuration(t.first_token - t.arrival, timings->mutable_time_to_first_token());
  }
  if (t.finished > t.arrival) {
    ToProtoDuration(t.finished - t.arrival, timings->mutable_total_time());
  }

  if (!info.prompt_logprobs.empty()) {
    for (const std::vector<TokenLogprob>& entry : info.prompt_logprobs) {
      FillPosition(entry, tokenizer, response->add_prompt_logprobs());
    }
    for (TokenId id : prompt) response->add_prompt_token_ids(id);
  }
}

}  // namespace openelm::server
