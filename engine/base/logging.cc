#include "engine/base/logging.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>

namespace openelm {
namespace {
std::atomic<int> g_min_severity{static_cast<int>(LogSeverity::kInfo)};
constexpr const char* kNames[] = {"D", "I", "W", "E", "F"};
}  // namespace

void SetMinLogSeverity(LogSeverity severity) {
  g_min_severity.store(static_cast<int>(severity), std::memory_order_relaxed);
}
LogSeverity MinLogSeverity() {
  return static_cast<LogSeverity>(g_min_severity.load(std::memory_order_relaxed));
}

std::string LogLinePrefix(LogSeverity severity, const char* file, int line) {
  const auto now = std::chrono::system_clock::now();
  const std::time_t secs = std::chrono::system_clock::to_time_t(now);
  const long micros = static_cast<long>(
      std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch())
          .count() %
      1000000);
  std::tm tm_utc;
  gmtime_r(&secs, &tm_utc);
  const char* base = file;
  for (const char* p = file; *p != '\0'; ++p) {
    if (*p == '/') base = p + 1;
  }
  char prefix[320];
  std::snprintf(
      prefix, sizeof(prefix), "%s %04d-%02d-%02dT%02d:%02d:%02d.%06ldZ %ld %.200s:%d] ",
      kNames[static_cast<int>(severity)], tm_utc.tm_year + 1900, tm_utc.tm_mon + 1,
      tm_utc.tm_mday, tm_utc.tm_hour, tm_utc.tm_min, tm_utc.tm_sec, micros,
      static_cast<long>(syscall(SYS_gettid)), base, line);
  return prefix;
}

LogMessage::LogMessage(LogSeverity severity, const char* file, int line)
    : severity_(severity) {
  stream_ << LogLinePrefix(severity, file, line);
}

LogMessage::~LogMessage() {
  stream_ << '\n';
  const std::string line = stream_.str();
  (void)!write(STDERR_FILENO, line.data(), line.size());
  if (severity_ == LogSeverity::kFatal) std::abort();
}

}  // namespace openelm
