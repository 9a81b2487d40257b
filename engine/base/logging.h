#ifndef OPENELM_ENGINE_BASE_LOGGING_H_
#define OPENELM_ENGINE_BASE_LOGGING_H_

#include <sstream>
#include <string>

// Minimal stream logger (Abseil 20220623 has no absl/log).
//   OPENELM_LOG(INFO) << "loaded " << n << " tensors";
// Writes one line to stderr: level, UTC time, thread id, file:line, message.
// Thread-safe: each line is written with a single write call.
namespace openelm {

enum class LogSeverity { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3, kFatal = 4 };

// Messages below this level are dropped. Default kInfo.
void SetMinLogSeverity(LogSeverity severity);
LogSeverity MinLogSeverity();

// The prefix OPENELM_LOG puts before a message ("I <UTC time> <tid>
// <file>:<line>] "), for lines written by other means (the access log).
std::string LogLinePrefix(LogSeverity severity, const char* file, int line);

class LogMessage {
 public:
  LogMessage(LogSeverity severity, const char* file, int line);
  ~LogMessage();  // flushes; aborts for kFatal
  LogMessage(const LogMessage&) = delete;
  LogMessage& operator=(const LogMessage&) = delete;
  std::ostream& stream() { return stream_; }

 private:
  LogSeverity severity_;
  std::ostringstream stream_;
};

namespace log_internal {
inline constexpr LogSeverity DEBUG = LogSeverity::kDebug;
inline constexpr LogSeverity INFO = LogSeverity::kInfo;
inline constexpr LogSeverity WARNING = LogSeverity::kWarning;
inline constexpr LogSeverity ERROR = LogSeverity::kError;
inline constexpr LogSeverity FATAL = LogSeverity::kFatal;
}  // namespace log_internal

}  // namespace openelm

#define OPENELM_LOG(level)                                            \
  if (::openelm::log_internal::level < ::openelm::MinLogSeverity()) { \
  } else                                                              \
    ::openelm::LogMessage(::openelm::log_internal::level, __FILE__, __LINE__).stream()

#endif  // OPENELM_ENGINE_BASE_LOGGING_H_
