// Fuzz target: the server's request validation (server/request_parser.h),
// with the real tokenizer. This is everything a client controls before a
// request reaches the engine.
//
// Input: byte 0 picks the path: 0 = the rest parsed as a GenerateRequest
// protobuf, 1 = parsed as a ChatRequest, 2 = the rest used as a raw text
// prompt (any bytes, including invalid UTF-8) with the rest also as a stop
// string and its bytes as token ids. Inputs that are not valid protobuf are
// skipped.
//
// Properties: never crashes; every refusal is kInvalidArgument; an accepted
// request has a non-empty prompt of in-vocabulary ids, parameters that pass
// SamplingParams::Validate and the documented limits, and fits the context.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/llm_engine.h"
#include "engine/sampling/sampling_params.h"
#include "engine/tokenizer/tokenizer.h"
#include "openelm/v1/inference.pb.h"
#include "server/request_parser.h"
#include "tests/fuzz/fuzz_tokenizer.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

const openelm::Tokenizer* g_tokenizer = nullptr;
openelm::server::RequestLimits* g_limits = nullptr;

void CheckOutcome(const absl::StatusOr<openelm::GenerateSpec>& spec) {
  if (!spec.ok()) {
    OPENELM_FUZZ_CHECK(spec.status().code() == absl::StatusCode::kInvalidArgument,
                       "refusal is not INVALID_ARGUMENT: %s",
                       spec.status().ToString().c_str());
    OPENELM_FUZZ_CHECK(!spec.status().message().empty(), "refusal without a message");
    return;
  }
  const openelm::SamplingParams& p = spec->params;
  OPENELM_FUZZ_CHECK(!spec->prompt.empty(), "accepted an empty prompt");
  for (openelm::TokenId id : spec->prompt) {
    OPENELM_FUZZ_CHECK(id >= 0 && id < g_limits->vocab_size, "prompt id %d outside vocab",
                       id);
  }
  const absl::Status valid = p.Validate(g_limits->vocab_size);
  OPENELM_FUZZ_CHECK(valid.ok(), "accepted params fail Validate: %s",
                     valid.ToString().c_str());
  OPENELM_FUZZ_CHECK(p.max_tokens >= 1, "max_tokens %d", p.max_tokens);
  OPENELM_FUZZ_CHECK(static_cast<int64_t>(spec->prompt.size()) + p.max_tokens <=
                         g_limits->max_context_length,
                     "prompt %zu + max_tokens %d exceeds the context %d",
                     spec->prompt.size(), p.max_tokens, g_limits->max_context_length);
  OPENELM_FUZZ_CHECK(p.n >= 1 && p.n <= openelm::kMaxN, "n = %d", p.n);
  OPENELM_FUZZ_CHECK(
      p.logprobs <= openelm::kMaxLogprobs && p.prompt_logprobs <= openelm::kMaxLogprobs,
      "logprobs %d / %d", p.logprobs, p.prompt_logprobs);
  OPENELM_FUZZ_CHECK(static_cast<int32_t>(p.stop.size()) <= openelm::kMaxStopStrings,
                     "%zu stop strings", p.stop.size());
  for (const std::string& s : p.stop) {
    OPENELM_FUZZ_CHECK(
        !s.empty() && static_cast<int32_t>(s.size()) <= openelm::kMaxStopStringBytes,
        "stop string of %zu bytes", s.size());
  }
  for (openelm::TokenId id : p.stop_token_ids) {
    OPENELM_FUZZ_CHECK(id >= 0 && id < g_limits->vocab_size, "stop id %d outside vocab",
                       id);
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  g_tokenizer = openelm::testing::LoadFuzzTokenizerOrDie();
  g_limits = new openelm::server::RequestLimits();
  g_limits->model_id = "OpenELM-fuzz";
  g_limits->max_context_length = 256;  // small, so "fits the context" is exercised
  g_limits->max_prompt_bytes = 4096;
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t mode = data[0] % 3;
  const char* rest = reinterpret_cast<const char*>(data) + 1;
  const int rest_size = static_cast<int>(size - 1);
  if (mode == 0) {
    openelm::v1::GenerateRequest request;
    if (!request.ParseFromArray(rest, rest_size)) return 0;
    CheckOutcome(openelm::server::ParseGenerateRequest(request, *g_tokenizer, *g_limits));
  } else if (mode == 1) {
    openelm::v1::ChatRequest request;
    if (!request.ParseFromArray(rest, rest_size)) return 0;
    CheckOutcome(openelm::server::ParseChatRequest(request, *g_tokenizer, *g_limits));
  } else {
    openelm::v1::GenerateRequest request;
    request.set_text(std::string(rest, rest_size));
    openelm::v1::GenerationOptions* options = request.mutable_options();
    options->add_stop(std::string(rest, rest_size));
    for (int i = 0; i < rest_size && i < 64; ++i) {
      options->add_stop_token_ids(static_cast<int8_t>(rest[i]) * 300);
    }
    options->set_max_tokens(1 + rest_size % 300);
    CheckOutcome(openelm::server::ParseGenerateRequest(request, *g_tokenizer, *g_limits));
  }
  return 0;
}
