// `openelm`: command-line client of openelm_server.
//
//   openelm generate "Once upon a time" --max_tokens=32 --temperature=0
//   openelm chat                               (interactive, multi-turn)
//   openelm chat --system="Be brief" --user="Hi"   (one turn)
//   openelm tokenize "Hello world"             -> 1 15043 3186
//   openelm detokenize 1 15043 3186
//   openelm models | load | health
//
// Exit status: 0 on success (health: only when SERVING), 1 when the call
// failed or the server is not serving, 2 on usage errors.

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "client/cli_util.h"
#include "client/openelm_client.h"
#include "openelm/version.h"

ABSL_FLAG(std::string, target, "127.0.0.1:50051",
          "Server address: host:port, a comma list of IP:port (round-robin), or a "
          "gRPC URI such as dns:///name:port");
ABSL_FLAG(std::string, tls_ca, "",
          "PEM file of the CA that signed the server certificate");
ABSL_FLAG(std::string, tls_cert, "", "PEM client certificate (mutual TLS)");
ABSL_FLAG(std::string, tls_key, "", "PEM client private key (mutual TLS)");
ABSL_FLAG(std::string, api_key, "", "API key (default: $OPENELM_API_KEY)");
ABSL_FLAG(absl::Duration, timeout, absl::Minutes(5), "Deadline of each call");
ABSL_FLAG(bool, json, false, "Print JSON (one object per line) for scripts");
ABSL_FLAG(std::string, model, "", "Model id (empty: the served model)");

// generate / chat
ABSL_FLAG(std::string, prompt, "", "Prompt text (or give it as positional arguments)");
ABSL_FLAG(std::string, prompt_ids, "", "Prompt as token ids \"1,15043\" (no BOS added)");
ABSL_FLAG(std::optional<bool>, add_bos, std::nullopt, "Prepend BOS to a text prompt");
ABSL_FLAG(bool, stream, true, "Stream output as it is generated (false: unary call)");
ABSL_FLAG(std::optional<int32_t>, max_tokens, std::nullopt,
          "Tokens to generate (server default 16)");
ABSL_FLAG(std::optional<float>, temperature, std::nullopt,
          "Sampling temperature; 0 = greedy");
ABSL_FLAG(std::optional<int32_t>, top_k, std::nullopt, "Top-k; 0 = off");
ABSL_FLAG(std::optional<float>, top_p, std::nullopt, "Nucleus mass in (0, 1]");
ABSL_FLAG(std::optional<float>, min_p, std::nullopt, "Min-p in [0, 1]");
ABSL_FLAG(std::optional<float>, repetition_penalty, std::nullopt,
          "HF repetition penalty (1 = off)");
ABSL_FLAG(std::optional<float>, presence_penalty, std::nullopt,
          "OpenAI presence penalty");
ABSL_FLAG(std::optional<float>, frequency_penalty, std::nullopt,
          "OpenAI frequency penalty");
ABSL_FLAG(std::string, logit_bias, "", "Logit bias \"id:bias,id:bias\"");
ABSL_FLAG(std::optional<uint64_t>, seed, std::nullopt, "Request RNG seed");
ABSL_FLAG(std::vector<std::string>, stop, {}, "Stop strings, comma separated");
ABSL_FLAG(std::string, stop_token_ids, "", "Stop token ids \"13,2\"");
ABSL_FLAG(std::optional<int32_t>, min_tokens, std::nullopt,
          "Suppress EOS/stop ids before this");
ABSL_FLAG(bool, ignore_eos, false, "Keep generating past EOS");
ABSL_FLAG(std::optional<int32_t>, logprobs, std::nullopt,
          "Top alternatives per generated token");
ABSL_FLAG(std::optional<int32_t>, prompt_logprobs, std::nullopt,
          "Top alternatives per prompt token");
ABSL_FLAG(std::optional<int32_t>, n, std::nullopt, "Completions per prompt (1..8)");
ABSL_FLAG(int32_t, priority, 0, "Priority within the tenant");

// chat
ABSL_FLAG(std::string, system, "", "chat: system message");
ABSL_FLAG(std::string, user, "", "chat: a single user message (non-interactive)");
ABSL_FLAG(
    std::string, messages_file, "",
    "chat: JSON file [{\"role\":...,\"content\":...}] to complete (non-interactive)");

// health
ABSL_FLAG(std::string, service, "", "health: service name (\"\" = whole server)");

namespace openelm::cli {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;

constexpr char kUsage[] =
    "openelm <command> [flags] [args]\n"
    "Commands:\n"
    "  generate PROMPT...   complete a prompt (streams by default)\n"
    "  chat                 chat with an Instruct model (stdin, one user turn per line;\n"
    "                       /reset clears history; or --user/--system/--messages_file)\n"
    "  tokenize TEXT...     print token ids\n"
    "  detokenize ID...     print the text of token ids\n"
    "  models               list served models\n"
    "  load                 print the server's current load\n"
    "  health               exit 0 iff the server is SERVING\n"
    "Run `openelm --helpfull` for all flags.";

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "openelm: %s\n", std::string(status.message()).c_str());
  return kExitFailed;
}

int UsageError(absl::string_view message) {
  std::fprintf(stderr, "openelm: %s\n\n%s\n", std::string(message).c_str(), kUsage);
  return kExitUsage;
}

absl::StatusOr<v1::GenerationOptions> OptionsFromFlags() {
  GenerationFlags f;
  f.max_tokens = absl::GetFlag(FLAGS_max_tokens);
  f.temperature = absl::GetFlag(FLAGS_temperature);
  f.top_k = absl::GetFlag(FLAGS_top_k);
  f.top_p = absl::GetFlag(FLAGS_top_p);
  f.min_p = absl::GetFlag(FLAGS_min_p);
  f.repetition_penalty = absl::GetFlag(FLAGS_repetition_penalty);
  f.presence_penalty = absl::GetFlag(FLAGS_presence_penalty);
  f.frequency_penalty = absl::GetFlag(FLAGS_frequency_penalty);
  f.logit_bias = absl::GetFlag(FLAGS_logit_bias);
  f.seed = absl::GetFlag(FLAGS_seed);
  f.stop = absl::GetFlag(FLAGS_stop);
  f.stop_token_ids = absl::GetFlag(FLAGS_stop_token_ids);
  f.min_tokens = absl::GetFlag(FLAGS_min_tokens);
  f.ignore_eos = absl::GetFlag(FLAGS_ignore_eos);
  f.logprobs = absl::GetFlag(FLAGS_logprobs);
  f.prompt_logprobs = absl::GetFlag(FLAGS_prompt_logprobs);
  f.n = absl::GetFlag(FLAGS_n);
  f.priority = absl::GetFlag(FLAGS_priority);
  v1::GenerationOptions options;
  absl::Status s = FillGenerationOptions(f, &options);
  if (!s.ok()) return s;
  return options;
}

// A one-line summary of the final message, for stderr.
std::string Summary(const v1::GenerateResponse& last) {
  std::vector<std::string> reasons;
  for (const v1::Choice& c : last.choices()) {
    if (c.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
      reasons.push_back(FinishReasonName(c.finish_reason()));
    }
  }
  auto ms = [](const google::protobuf::Duration& d) {
    return static_cast<double>(d.seconds()) * 1e3 + d.nanos() / 1e6;
  };
  return absl::StrFormat(
      "[finish=%s prompt_tokens=%d completion_tokens=%d ttft=%.1fms total=%.1fms]",
      absl::StrJoin(reasons, ","), last.usage().prompt_tokens(),
      last.usage().completion_tokens(), ms(last.timings().time_to_first_token()),
      ms(last.timings().total_time()));
}

// Prints streamed chunks. With one choice, text goes straight to stdout; with
// several, each choice is collected and printed at the end under a header.
class StreamPrinter {
 public:
  explicit StreamPrinter(bool json) : json_(json) {}

  bool OnChunk(const v1::GenerateResponse& chunk) {
    if (json_) {
      std::printf("%s\n", ToJson(chunk).c_str());
    } else {
      for (const v1::Choice& c : chunk.choices()) {
        if (c.index() == 0 && !multi_) {
          Write(c.text());
        } else {
          multi_ = true;
          texts_[c.index()] += c.text();
        }
      }
    }
    std::fflush(stdout);
    return true;
  }

  void Finish(const v1::GenerateResponse& last) {
    if (json_) return;
    for (const auto& [index, text] : texts_) {
      Write(absl::StrCat("\n--- choice ", index, " ---\n", text));
    }
    // End the output with a newline unless the text already did.
    if (NeedsFinalNewline(tail_)) std::fputc('\n', stdout);
    std::fflush(stdout);
    if (isatty(STDERR_FILENO)) std::fprintf(stderr, "%s\n", Summary(last).c_str());
  }

 private:
  void Write(absl::string_view text) {
    if (text.empty()) return;
    std::fwrite(text.data(), 1, text.size(), stdout);
    tail_ = std::string(text);
  }

  const bool json_;
  bool multi_ = false;
  std::string tail_;                      // the last non-empty text written to stdout
  std::map<int32_t, std::string> texts_;  // choices other than a lone choice 0
};

void PrintUnary(const v1::GenerateResponse& response, bool json) {
  if (json) {
    std::printf("%s\n", ToJson(response).c_str());
    return;
  }
  if (response.choices_size() == 1) {
    const std::string& text = response.choices(0).text();
    std::fwrite(text.data(), 1, text.size(), stdout);
    // End the output with a newline unless the text already did.
    if (NeedsFinalNewline(text)) std::fputc('\n', stdout);
  } else {
    for (const v1::Choice& c : response.choices()) {
      std::printf("--- choice %d ---\n%s\n", c.index(), c.text().c_str());
    }
  }
  std::fflush(stdout);
  if (isatty(STDERR_FILENO)) std::fprintf(stderr, "%s\n", Summary(response).c_str());
}

int RunGenerate(OpenElmClient& client, const std::vector<std::string>& args) {
  v1::GenerateRequest request;
  request.set_model(absl::GetFlag(FLAGS_model));
  const std::string ids = absl::GetFlag(FLAGS_prompt_ids);
  std::string text = absl::GetFlag(FLAGS_prompt);
  if (!args.empty()) {
    if (!text.empty())
      return UsageError("give the prompt either as --prompt or as arguments");
    text = absl::StrJoin(args, " ");
  }
  if (!ids.empty()) {
    if (!text.empty()) return UsageError("--prompt_ids and a text prompt are exclusive");
    absl::StatusOr<std::vector<int32_t>> parsed = ParseIdList(ids);
    if (!parsed.ok())
      return UsageError(absl::StrCat("--prompt_ids: ", parsed.status().message()));
    request.mutable_token_ids()->mutable_ids()->Add(parsed->begin(), parsed->end());
  } else {
    if (text.empty()) return UsageError("generate needs a prompt");
    request.set_text(text);
  }
  if (std::optional<bool> bos = absl::GetFlag(FLAGS_add_bos)) request.set_add_bos(*bos);
  absl::StatusOr<v1::GenerationOptions> options = OptionsFromFlags();
  if (!options.ok()) return UsageError(options.status().message());
  *request.mutable_options() = *std::move(options);

  const bool json = absl::GetFlag(FLAGS_json);
  if (!absl::GetFlag(FLAGS_stream)) {
    absl::StatusOr<v1::GenerateResponse> response = client.Generate(request);
    if (!response.ok()) return Fail(response.status());
    PrintUnary(*response, json);
    return kExitOk;
  }
  StreamPrinter printer(json);
  absl::StatusOr<v1::GenerateResponse> last = client.StreamGenerate(
      request, [&](const v1::GenerateResponse& chunk) { return printer.OnChunk(chunk); });
  if (!last.ok()) {
    std::fflush(stdout);
    return Fail(last.status());
  }
  printer.Finish(*last);
  return kExitOk;
}

// Sends `messages` and prints the reply; returns the reply text.
absl::StatusOr<std::string> ChatTurn(OpenElmClient& client,
                                     const std::vector<v1::ChatMessage>& messages,
                                     const v1::GenerationOptions& options, bool json,
                                     bool stream) {
  v1::ChatRequest request;
  request.set_model(absl::GetFlag(FLAGS_model));
  for (const v1::ChatMessage& m : messages) *request.add_messages() = m;
  *request.mutable_options() = options;
  if (!stream) {
    absl::StatusOr<v1::GenerateResponse> response = client.Chat(request);
    if (!response.ok()) return response.status();
    PrintUnary(*response, json);
    return response->choices_size() > 0 ? response->choices(0).text() : "";
  }
  std::string reply;
  StreamPrinter printer(json);
  absl::StatusOr<v1::GenerateResponse> last =
      client.StreamChat(request, [&](const v1::GenerateResponse& chunk) {
        for (const v1::Choice& c : chunk.choices()) {
          if (c.index() == 0) reply += c.text();
        }
        return printer.OnChunk(chunk);
      });
  if (!last.ok()) return last.status();
  printer.Finish(*last);
  return reply;
}

int RunChat(OpenElmClient& client, const std::vector<std::string>& args) {
  absl::StatusOr<v1::GenerationOptions> options = OptionsFromFlags();
  if (!options.ok()) return UsageError(options.status().message());
  const bool json = absl::GetFlag(FLAGS_json);
  const bool stream = absl::GetFlag(FLAGS_stream);
  std::vector<v1::ChatMessage> history;
  if (!absl::GetFlag(FLAGS_system).empty()) {
    v1::ChatMessage m;
    m.set_role(v1::ROLE_SYSTEM);
    m.set_content(absl::GetFlag(FLAGS_system));
    history.push_back(std::move(m));
  }
  const std::string file = absl::GetFlag(FLAGS_messages_file);
  std::string user = absl::GetFlag(FLAGS_user);
  if (!args.empty()) {
    if (!user.empty())
      return UsageError("give the user message either as --user or as arguments");
    user = absl::StrJoin(args, " ");
  }
  if (!file.empty() || !user.empty()) {  // one turn, non-interactive
    if (!file.empty()) {
      absl::StatusOr<std::string> text = ReadFileToString(file);
      if (!text.ok()) return Fail(text.status());
      absl::StatusOr<std::vector<v1::ChatMessage>> parsed = ParseMessagesJson(*text);
      if (!parsed.ok()) return Fail(parsed.status());
      history.insert(history.end(), parsed->begin(), parsed->end());
    }
    if (!user.empty()) {
      v1::ChatMessage m;
      m.set_role(v1::ROLE_USER);
      m.set_content(user);
      history.push_back(std::move(m));
    }
    absl::StatusOr<std::string> reply = ChatTurn(client, history, *options, json, stream);
    return reply.ok() ? kExitOk : Fail(reply.status());
  }

  // Interactive: one user turn per stdin line.
  const bool tty = isatty(STDIN_FILENO);
  const size_t base = history.size();  // the system message survives /reset
  std::string line;
  for (;;) {
    if (tty) std::fprintf(stderr, "> ");
    if (!std::getline(std::cin, line)) break;
    if (line.empty()) continue;
    if (line == "/exit" || line == "/quit") break;
    if (line == "/reset") {
      history.resize(base);
      if (tty) std::fprintf(stderr, "(history cleared)\n");
      continue;
    }
    v1::ChatMessage m;
    m.set_role(v1::ROLE_USER);
    m.set_content(line);
    history.push_back(m);
    absl::StatusOr<std::string> reply = ChatTurn(client, history, *options, json, stream);
    if (!reply.ok()) {
      history.pop_back();  // keep the history valid for the next turn
      Fail(reply.status());
      if (!tty) return kExitFailed;
      continue;
    }
    v1::ChatMessage a;
    a.set_role(v1::ROLE_ASSISTANT);
    a.set_content(*reply);
    history.push_back(std::move(a));
  }
  return kExitOk;
}

int RunTokenize(OpenElmClient& client, const std::vector<std::string>& args) {
  std::string text = absl::GetFlag(FLAGS_prompt);
  if (!args.empty()) text = absl::StrJoin(args, " ");
  const std::optional<bool> bos = absl::GetFlag(FLAGS_add_bos);
  absl::StatusOr<v1::TokenizeResponse> response =
      client.Tokenize(text, bos.value_or(true));
  if (!response.ok()) return Fail(response.status());
  if (absl::GetFlag(FLAGS_json)) {
    std::printf("%s\n", ToJson(*response).c_str());
  } else {
    std::printf("%s\n", absl::StrJoin(response->token_ids(), " ").c_str());
  }
  return kExitOk;
}

int RunDetokenize(OpenElmClient& client, const std::vector<std::string>& args) {
  absl::StatusOr<std::vector<int32_t>> ids = ParseIdList(absl::StrJoin(args, " "));
  if (!ids.ok()) return UsageError(ids.status().message());
  absl::StatusOr<std::string> text = client.Detokenize(*ids);
  if (!text.ok()) return Fail(text.status());
  if (absl::GetFlag(FLAGS_json)) {
    v1::DetokenizeResponse r;
    r.set_text(*text);
    std::printf("%s\n", ToJson(r).c_str());
  } else {
    std::printf("%s\n", text->c_str());
  }
  return kExitOk;
}

int RunModels(OpenElmClient& client) {
  absl::StatusOr<v1::ListModelsResponse> response = client.ListModels();
  if (!response.ok()) return Fail(response.status());
  if (absl::GetFlag(FLAGS_json)) {
    std::printf("%s\n", ToJson(*response).c_str());
    return kExitOk;
  }
  // WEIGHTS is the precision in memory, MATMUL the precision the matmuls run
  // in (bf16 weights are widened to f32 in registers on CPUs without bf16
  // instructions); the line under the table names the kernels.
  std::printf("%-28s %-6s %14s %6s %7s %-7s %-6s %-5s %10s\n", "ID", "SIZE", "PARAMETERS",
              "LAYERS", "CONTEXT", "WEIGHTS", "MATMUL", "KV", "KV_TOKENS");
  for (const v1::ModelInfo& m : response->models()) {
    std::printf("%-28s %-6s %14lld %6d %7d %-7s %-6s %-5s %10lld\n", m.id().c_str(),
                m.size().c_str(), static_cast<long long>(m.num_parameters()),
                m.num_layers(), m.max_context_length(), m.weight_dtype().c_str(),
                m.activation_dtype().empty() ? "-" : m.activation_dtype().c_str(),
                m.kv_dtype().c_str(), static_cast<long long>(m.kv_capacity_tokens()));
  }
  for (const v1::ModelInfo& m : response->models()) {
    std::printf("%s: %s\n", m.id().c_str(), DescribeExecution(m).c_str());
  }
  return kExitOk;
}

int RunLoad(OpenElmClient& client) {
  absl::StatusOr<v1::ServerLoad> load = client.GetServerLoad();
  if (!load.ok()) return Fail(load.status());
  if (absl::GetFlag(FLAGS_json)) {
    std::printf("%s\n", ToJson(*load).c_str());
    return kExitOk;
  }
  std::printf(
      "requests_waiting %d\nrequests_running %d\nkv_blocks_free %d\n"
      "kv_blocks_total %d\nkv_usage_ratio %.4f\ndraining %s\n",
      load->requests_waiting(), load->requests_running(), load->kv_blocks_free(),
      load->kv_blocks_total(), load->kv_usage_ratio(),
      load->draining() ? "true" : "false");
  return kExitOk;
}

int RunHealth(OpenElmClient& client) {
  absl::StatusOr<grpc::health::v1::HealthCheckResponse::ServingStatus> status =
      client.CheckHealth(absl::GetFlag(FLAGS_service));
  if (!status.ok()) return Fail(status.status());
  const std::string name =
      grpc::health::v1::HealthCheckResponse::ServingStatus_Name(*status);
  if (absl::GetFlag(FLAGS_json)) {
    std::printf("{\"status\":\"%s\"}\n", name.c_str());
  } else {
    std::printf("%s\n", name.c_str());
  }
  return *status == grpc::health::v1::HealthCheckResponse::SERVING ? kExitOk
                                                                   : kExitFailed;
}

int Main(int argc, char** argv) {
  absl::SetProgramUsageMessage(kUsage);
  // --help lists the CLI's flags (absl matches only files named after the
  // program by default; this one is "openelm", its flags are here).
  absl::FlagsUsageConfig usage;
  usage.contains_help_flags = [](absl::string_view file) {
    return absl::StrContains(file, "client/");
  };
  usage.contains_helpshort_flags = usage.contains_help_flags;
  usage.version_string = [] { return VersionLine("openelm"); };
  absl::SetFlagsUsageConfig(usage);
  std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  if (positional.size() < 2) return UsageError("missing command");
  const std::string command = positional[1];
  const std::vector<std::string> args(positional.begin() + 2, positional.end());

  ClientOptions options;
  options.target = absl::GetFlag(FLAGS_target);
  options.tls_ca_file = absl::GetFlag(FLAGS_tls_ca);
  options.tls_cert_file = absl::GetFlag(FLAGS_tls_cert);
  options.tls_key_file = absl::GetFlag(FLAGS_tls_key);
  options.api_key = absl::GetFlag(FLAGS_api_key);
  if (options.api_key.empty()) {
    if (const char* env = std::getenv("OPENELM_API_KEY")) options.api_key = env;
  }
  options.timeout = absl::GetFlag(FLAGS_timeout);
  if (command == "health" && options.timeout > absl::Seconds(10) &&
      absl::GetFlag(FLAGS_timeout) == absl::Minutes(5)) {
    options.timeout = absl::Seconds(5);  // a probe must not hang
  }
  absl::StatusOr<std::unique_ptr<OpenElmClient>> client = OpenElmClient::Create(options);
  if (!client.ok()) return UsageError(client.status().message());

  if (command == "generate") return RunGenerate(**client, args);
  if (command == "chat") return RunChat(**client, args);
  if (command == "tokenize") return RunTokenize(**client, args);
  if (command == "detokenize") return RunDetokenize(**client, args);
  if (command == "models") return RunModels(**client);
  if (command == "load") return RunLoad(**client);
  if (command == "health") return RunHealth(**client);
  return UsageError(absl::StrCat("unknown command \"", command, "\""));
}

}  // namespace
}  // namespace openelm::cli

int main(int argc, char** argv) { return openelm::cli::Main(argc, argv); }
