#ifndef OPENELM_SERVER_PROTO_CONVERT_H_
#define OPENELM_SERVER_PROTO_CONVERT_H_

#include <cstdint>
#include <vector>

#include "absl/time/time.h"
#include "engine/llm_engine.h"
#include "engine/tokenizer/tokenizer.h"
#include "google/protobuf/duration.pb.h"
#include "openelm/v1/inference.pb.h"

namespace openelm::server {

// Engine results -> API messages. Pure functions; thread-safe.

v1::FinishReason ToProtoFinishReason(FinishReason reason);

void ToProtoDuration(absl::Duration d, google::protobuf::Duration* out);

// The choice with `index` in `response`, added (in index order of arrival)
// when missing.
v1::Choice* FindOrAddChoice(int32_t index, v1::GenerateResponse* response);

// Appends one OutputDelta (text, token ids, logprobs with piece text when
// `tokenizer` is set) to the choice of its index. Returns an estimate of the
// bytes added to the serialized message.
int64_t AppendDelta(const OutputDelta& delta, const Tokenizer* tokenizer,
                    v1::GenerateResponse* response);

// Adds the end-of-request fields: each completion's finish reason and stop
// string, usage, timings and (when present) prompt logprobs with the prompt
// ids.
void AppendFinish(const FinishInfo& info, const std::vector<TokenId>& prompt,
                  const Tokenizer* tokenizer, v1::GenerateResponse* response);

}  // namespace openelm::server

#endif  // OPENELM_SERVER_PROTO_CONVERT_H_
