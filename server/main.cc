// openelm_server: flags -> Server::Create -> wait for SIGTERM/SIGINT ->
// drain -> exit 0. SIGHUP reloads the tenants file.
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <system_error>
#include <thread>

#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "engine/base/logging.h"
#include "engine/model/checkpoint.h"
#include "engine/model/openelm_config.h"
#include "openelm/version.h"
#include "server/default_paths.h"
#include "server/options.h"
#include "server/server.h"

namespace openelm::server {
namespace {

// Returns the directory of the random-weight default model, generating it on
// first use. Written into a temporary sibling and renamed, so an interrupted
// run never leaves a half-written checkpoint behind.
absl::StatusOr<std::string> EnsureDefaultModel(const std::string& size) {
  absl::StatusOr<std::string> dir = DefaultModelDir(size);
  if (!dir.ok()) return dir.status();
  OPENELM_LOG(WARNING)
      << "\n*****************************************************************"
      << "\n* No --model_dir: serving RANDOM WEIGHTS (OpenELM-" << size << " shape)."
      << "\n* Generated text is MEANINGLESS. Pass --model_dir=<HF checkpoint>"
      << "\n* (e.g. a download of apple/OpenELM-270M-Instruct) for real output."
      << "\n*****************************************************************";
  std::error_code ec;
  if (std::filesystem::exists(*dir + "/config.json", ec)) {
    OPENELM_LOG(INFO) << "using cached random-weight checkpoint " << *dir;
    return *dir;
  }
  absl::StatusOr<OpenElmConfig> config = MakeOpenElmConfig(size);
  if (!config.ok()) return config.status();
  const std::string tmp = absl::StrCat(*dir, ".tmp-", getpid());
  OPENELM_LOG(INFO) << "generating random-weight checkpoint into " << *dir
                    << " (first run only)";
  std::filesystem::create_directories(tmp, ec);
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create ", tmp, ": ", ec.message()));
  }
  if (absl::Status s = WriteRandomCheckpoint(*config, /*seed=*/0, DType::kBF16,
                                             /*num_shards=*/1, tmp);
      !s.ok()) {
    std::filesystem::remove_all(tmp, ec);
    return s;
  }
  std::filesystem::rename(tmp, *dir, ec);
  if (ec) {
    // Another process may have won the race; use whatever is there.
    std::filesystem::remove_all(tmp, ec);
    if (!std::filesystem::exists(*dir + "/config.json", ec)) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot move the checkpoint to ", *dir));
    }
  }
  return *dir;
}

int Run(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Serves an OpenELM model over gRPC (openelm.v1.InferenceService).\n"
      "Usage: openelm_server [--model_dir=DIR] [--tokenizer=FILE] [--port=N] ...");
  // --help lists the server's flags, which live in server/options.cc (absl
  // matches only files named after the program by default).
  absl::FlagsUsageConfig usage;
  usage.contains_help_flags = [](absl::string_view file) {
    return absl::StrContains(file, "server/");
  };
  usage.contains_helpshort_flags = usage.contains_help_flags;
  usage.version_string = [] { return openelm::VersionLine("openelm_server"); };
  absl::SetFlagsUsageConfig(usage);
  absl::ParseCommandLine(argc, argv);

  // Block the shutdown signals in every thread (threads created later inherit
  // the mask); this thread takes them synchronously with sigwait().
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  absl::StatusOr<ServerOptions> options = ServerOptionsFromFlags();
  if (!options.ok()) {
    OPENELM_LOG(ERROR) << options.status().ToString();
    return 2;
  }
  // Before the default model, which may take a while to generate.
  if (options->tokenizer_path.empty()) {
    absl::StatusOr<std::string> tokenizer = FindDefaultTokenizer();
    if (!tokenizer.ok()) {
      OPENELM_LOG(ERROR) << "start-up failed: " << tokenizer.status().ToString();
      return 1;
    }
    options->tokenizer_path = *tokenizer;
  }
  if (options->model_dir.empty()) {
    absl::StatusOr<std::string> dir = EnsureDefaultModel(DefaultModelSizeFromFlags());
    if (!dir.ok()) {
      OPENELM_LOG(ERROR) << dir.status().ToString();
      return 1;
    }
    options->model_dir = *dir;
  }
  OPENELM_LOG(INFO) << "model_dir " << options->model_dir << ", tokenizer "
                    << options->tokenizer_path << ", oneDNN threads "
                    << (options->num_threads == 0
                            ? absl::StrCat("all (", std::thread::hardware_concurrency(),
                                           " cores)")
                            : absl::StrCat(options->num_threads))
                    << ", drain_timeout " << absl::FormatDuration(options->drain_timeout);

  absl::StatusOr<std::unique_ptr<Server>> server = Server::Create(*options);
  if (!server.ok()) {
    OPENELM_LOG(ERROR) << "start-up failed: " << server.status().ToString();
    return 1;
  }
  // Scripts and tests read these lines to learn the ports.
  std::printf("listening on %s\n", (*server)->address().c_str());
  if ((*server)->metrics_port() >= 0) {
    std::printf("metrics on %s:%d\n", options->host.c_str(), (*server)->metrics_port());
  }
  if ((*server)->http_port() >= 0) {
    std::printf("http on %s:%d\n", options->host.c_str(), (*server)->http_port());
  }
  std::fflush(stdout);

  int signal_number = 0;
  while (true) {
    if (sigwait(&signals, &signal_number) != 0) continue;
    if (signal_number != SIGHUP) break;
    // Reload the tenants file; a bad edit keeps the old config.
    if ((*server)->tenants().path().empty()) {
      OPENELM_LOG(INFO) << "SIGHUP: no --tenants_config to reload";
    } else if (absl::Status s = (*server)->tenants().Reload(); !s.ok()) {
      OPENELM_LOG(ERROR) << "SIGHUP: tenants reload failed, keeping the old "
                            "config: "
                         << s.ToString();
    } else {
      OPENELM_LOG(INFO) << "SIGHUP: tenants reloaded from " << (*server)->tenants().path()
                        << " (generation " << (*server)->tenants().generation() << ")";
    }
  }
  OPENELM_LOG(INFO) << "received " << (signal_number == SIGTERM ? "SIGTERM" : "SIGINT")
                    << "; draining";
  (*server)->Drain(options->drain_timeout);
  server->reset();
  OPENELM_LOG(INFO) << "bye";
  return 0;
}

}  // namespace
}  // namespace openelm::server

int main(int argc, char** argv) { return openelm::server::Run(argc, argv); }
