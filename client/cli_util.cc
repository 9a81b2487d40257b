#include "client/cli_util.h"

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"

namespace openelm::cli {

absl::StatusOr<std::vector<int32_t>> ParseIdList(absl::string_view text) {
  std::vector<int32_t> ids;
  for (absl::string_view item :
       absl::StrSplit(text, absl::ByAnyChar(", \t\n"), absl::SkipEmpty())) {
    int32_t id = 0;
    if (!absl::SimpleAtoi(item, &id)) {
      return absl::InvalidArgumentError(absl::StrCat("\"", item, "\" is not a token id"));
    }
    ids.push_back(id);
  }
  return ids;
}

absl::StatusOr<std::map<int32_t, float>> ParseLogitBias(absl::string_view text) {
  std::map<int32_t, float> bias;
  for (absl::string_view item : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(item, absl::MaxSplits(':', 1));
    int32_t id = 0;
    float value = 0;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(kv.first), &id) ||
        !absl::SimpleAtof(absl::StripAsciiWhitespace(kv.second), &value)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--logit_bias: \"", item, "\" must be token_id:bias"));
    }
    bias[id] = value;
  }
  return bias;
}

absl::Status FillGenerationOptions(const GenerationFlags& f, v1::GenerationOptions* o) {
  if (f.max_tokens) o->set_max_tokens(*f.max_tokens);
  if (f.temperature) o->set_temperature(*f.temperature);
  if (f.top_k) o->set_top_k(*f.top_k);
  if (f.top_p) o->set_top_p(*f.top_p);
  if (f.min_p) o->set_min_p(*f.min_p);
  if (f.repetition_penalty) o->set_repetition_penalty(*f.repetition_penalty);
  if (f.presence_penalty) o->set_presence_penalty(*f.presence_penalty);
  if (f.frequency_penalty) o->set_frequency_penalty(*f.frequency_penalty);
  absl::StatusOr<std::map<int32_t, float>> bias = ParseLogitBias(f.logit_bias);
  if (!bias.ok()) return bias.status();
  for (const auto& [id, value] : *bias) (*o->mutable_logit_bias())[id] = value;
  if (f.seed) o->set_seed(*f.seed);
  for (const std::string& s : f.stop) o->add_stop(s);
  absl::StatusOr<std::vector<int32_t>> stop_ids = ParseIdList(f.stop_token_ids);
  if (!stop_ids.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--stop_token_ids: ", stop_ids.status().message()));
  }
  for (int32_t id : *stop_ids) o->add_stop_token_ids(id);
  if (f.min_tokens) o->set_min_tokens(*f.min_tokens);
  o->set_ignore_eos(f.ignore_eos);
  if (f.logprobs) o->set_logprobs(*f.logprobs);
  if (f.prompt_logprobs) o->set_prompt_logprobs(*f.prompt_logprobs);
  if (f.n) o->set_n(*f.n);
  o->set_priority(f.priority);
  return absl::OkStatus();
}

absl::StatusOr<v1::Role> ParseRole(absl::string_view name) {
  const std::string n = absl::AsciiStrToLower(name);
  if (n == "system" || n == "role_system") return v1::ROLE_SYSTEM;
  if (n == "user" || n == "role_user") return v1::ROLE_USER;
  if (n == "assistant" || n == "role_assistant") return v1::ROLE_ASSISTANT;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown chat role \"", name, "\" (use system, user or assistant)"));
}

absl::StatusOr<std::vector<v1::ChatMessage>> ParseMessagesJson(absl::string_view json) {
  google::protobuf::Value root;
  google::protobuf::util::Status parsed = google::protobuf::util::JsonStringToMessage(
      google::protobuf::StringPiece(json.data(), json.size()), &root);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("messages JSON does not parse: ", parsed.message().as_string()));
  }
  const google::protobuf::ListValue* list = nullptr;
  if (root.has_list_value()) {
    list = &root.list_value();
  } else if (root.has_struct_value()) {
    auto it = root.struct_value().fields().find("messages");
    if (it != root.struct_value().fields().end() && it->second.has_list_value()) {
      list = &it->second.list_value();
    }
  }
  if (list == nullptr) {
    return absl::InvalidArgumentError(
        "messages JSON must be an array of {role, content} or {\"messages\": [...]}");
  }
  std::vector<v1::ChatMessage> messages;
  for (int i = 0; i < list->values_size(); ++i) {
    const google::protobuf::Value& v = list->values(i);
    if (!v.has_struct_value()) {
      return absl::InvalidArgumentError(
          absl::StrCat("messages[", i, "] must be an object"));
    }
    const auto& fields = v.struct_value().fields();
    auto role = fields.find("role");
    auto content = fields.find("content");
    if (role == fields.end() || content == fields.end() ||
        !role->second.has_string_value() || !content->second.has_string_value()) {
      return absl::InvalidArgumentError(
          absl::StrCat("messages[", i, "] must have string \"role\" and \"content\""));
    }
    absl::StatusOr<v1::Role> r = ParseRole(role->second.string_value());
    if (!r.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("messages[", i, "]: ", r.status().message()));
    }
    v1::ChatMessage m;
    m.set_role(*r);
    m.set_content(content->second.string_value());
    messages.push_back(std::move(m));
  }
  return messages;
}

std::string ToJson(const google::protobuf::Message& message) {
  std::string out;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = false;
  google::protobuf::util::Status s =
      google::protobuf::util::MessageToJsonString(message, &out, options);
  if (!s.ok()) return "{}";
  return out;
}

std::string FinishReasonName(v1::FinishReason reason) {
  switch (reason) {
    case v1::FINISH_REASON_EOS:
      return "eos";
    case v1::FINISH_REASON_LENGTH:
      return "length";
    case v1::FINISH_REASON_STOP_SEQUENCE:
      return "stop_sequence";
    case v1::FINISH_REASON_STOP_TOKEN:
      return "stop_token";
    case v1::FINISH_REASON_CONTEXT_LENGTH:
      return "context_length";
    case v1::FINISH_REASON_CANCELLED:
      return "cancelled";
    case v1::FINISH_REASON_DEADLINE:
      return "deadline";
    case v1::FINISH_REASON_ERROR:
      return "error";
    case v1::FINISH_REASON_SHUTDOWN:
      return "shutdown";
    default:
      return "unspecified";
  }
}

namespace {

// "onednn" -> "oneDNN", "own-avx2" -> "own avx2 kernels",
// "own-int8-avx2" -> "own int8 avx2 kernels".
std::string KernelsName(absl::string_view matmul) {
  if (matmul == "onednn") return "oneDNN";
  if (absl::ConsumePrefix(&matmul, "own-")) {
    return absl::StrCat("own ", absl::StrReplaceAll(matmul, {{"-", " "}}), " kernels");
  }
  return std::string(matmul);
}

}  // namespace

std::string DescribeExecution(const v1::ModelInfo& model) {
  std::vector<std::string> parts;
  if (!model.weight_dtype().empty())
    parts.push_back(absl::StrCat("weights ", model.weight_dtype()));
  std::string matmul;
  for (absl::string_view item :
       absl::StrSplit(model.execution_plan(), ' ', absl::SkipEmpty())) {
    if (absl::ConsumePrefix(&item, "matmul=")) matmul = KernelsName(item);
  }
  if (!model.activation_dtype().empty()) {
    parts.push_back(absl::StrCat("matmuls ", model.activation_dtype(),
                                 matmul.empty() ? "" : absl::StrCat(" (", matmul, ")")));
  } else if (!matmul.empty()) {
    parts.push_back(absl::StrCat("matmuls on ", matmul));
  }
  if (!model.kv_dtype().empty()) parts.push_back(absl::StrCat("kv ", model.kv_dtype()));
  if (!model.cpu_isa().empty()) parts.push_back(absl::StrCat("cpu ", model.cpu_isa()));
  return absl::StrJoin(parts, ", ");
}

bool NeedsFinalNewline(absl::string_view last_text) {
  return !absl::EndsWith(last_text, "\n");
}

}  // namespace openelm::cli
