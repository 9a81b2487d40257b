#include "client/bench/stats.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace openelm::bench {

double Percentile(absl::Span<const double> sorted, double p) {
  if (sorted.empty()) return 0;
  p = std::clamp(p, 0.0, 100.0);
  // numpy "linear": rank = p/100 * (n - 1), interpolate between neighbours.
  const double rank = p / 100.0 * static_cast<double>(sorted.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(rank));
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  const double frac = rank - static_cast<double>(lo);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * frac;
}

Summary Summarize(std::vector<double> values) {
  Summary s;
  s.count = static_cast<int64_t>(values.size());
  if (values.empty()) return s;
  std::sort(values.begin(), values.end());
  double sum = 0;
  for (double v : values) sum += v;
  s.mean = sum / static_cast<double>(values.size());
  double sq = 0;
  for (double v : values) sq += (v - s.mean) * (v - s.mean);
  s.stddev = std::sqrt(sq / static_cast<double>(values.size()));
  s.min = values.front();
  s.max = values.back();
  s.median = Percentile(values, 50);
  s.p90 = Percentile(values, 90);
  s.p99 = Percentile(values, 99);
  return s;
}

std::optional<double> TpotMs(const RequestRecord& record) {
  if (record.output_tokens < 2) return std::nullopt;
  return absl::ToDoubleMilliseconds(record.e2e - record.ttft) /
         static_cast<double>(record.output_tokens - 1);
}

absl::StatusOr<GoodputSlo> ParseGoodputSlo(absl::string_view spec) {
  GoodputSlo slo;
  for (absl::string_view item : absl::StrSplit(spec, ',', absl::SkipWhitespace())) {
    std::pair<std::string, std::string> kv =
        absl::StrSplit(item, absl::MaxSplits(':', 1));
    const std::string key = absl::AsciiStrToLower(absl::StripAsciiWhitespace(kv.first));
    double ms = 0;
    if (!absl::SimpleAtod(absl::StripAsciiWhitespace(kv.second), &ms) || !(ms > 0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--goodput: \"", item,
                       "\" needs a positive number of milliseconds, e.g. ttft:500"));
    }
    if (key == "ttft") {
      slo.ttft_ms = ms;
    } else if (key == "tpot") {
      slo.tpot_ms = ms;
    } else if (key == "e2e" || key == "e2el") {
      slo.e2e_ms = ms;
    } else {
      return absl::InvalidArgumentError(absl::StrCat("--goodput: unknown metric \"", key,
                                                     "\" (use ttft, tpot or e2e)"));
    }
  }
  return slo;
}

bool MeetsSlo(const RequestRecord& record, const GoodputSlo& slo) {
  if (!record.success) return false;
  if (slo.ttft_ms && absl::ToDoubleMilliseconds(record.ttft) > *slo.ttft_ms) return false;
  if (slo.e2e_ms && absl::ToDoubleMilliseconds(record.e2e) > *slo.e2e_ms) return false;
  if (slo.tpot_ms) {
    std::optional<double> tpot = TpotMs(record);
    if (tpot && *tpot > *slo.tpot_ms) return false;
  }
  return true;
}

BenchmarkMetrics ComputeMetrics(absl::Span<const RequestRecord> records,
                                absl::Duration duration, const GoodputSlo& slo,
                                int32_t tenant) {
  BenchmarkMetrics m;
  std::vector<double> ttft, tpot, itl, e2e, server_ttft, server_e2e;
  for (const RequestRecord& r : records) {
    if (tenant >= 0 && r.tenant != tenant) continue;
    if (!r.success) {
      ++m.failed;
      ++m.errors_by_code[r.code_name.empty() ? absl::StrCat("code_", r.status_code)
                                             : r.code_name];
      continue;
    }
    ++m.completed;
    m.total_input_tokens += r.prompt_tokens;
    m.total_output_tokens += r.output_tokens;
    if (r.output_tokens > 0) ttft.push_back(absl::ToDoubleMilliseconds(r.ttft));
    if (std::optional<double> t = TpotMs(r)) tpot.push_back(*t);
    for (absl::Duration gap : r.itl) itl.push_back(absl::ToDoubleMilliseconds(gap));
    e2e.push_back(absl::ToDoubleMilliseconds(r.e2e));
    if (r.server_e2e > absl::ZeroDuration()) {
      server_e2e.push_back(absl::ToDoubleMilliseconds(r.server_e2e));
      if (r.output_tokens > 0)
        server_ttft.push_back(absl::ToDoubleMilliseconds(r.server_ttft));
    }
    if (!slo.empty() && MeetsSlo(r, slo)) ++m.good_requests;
  }
  m.duration_s = absl::ToDoubleSeconds(duration);
  if (m.duration_s > 0) {
    m.request_throughput = static_cast<double>(m.completed) / m.duration_s;
    m.output_throughput = static_cast<double>(m.total_output_tokens) / m.duration_s;
    m.total_token_throughput =
        static_cast<double>(m.total_input_tokens + m.total_output_tokens) / m.duration_s;
    if (!slo.empty())
      m.request_goodput = static_cast<double>(m.good_requests) / m.duration_s;
  }
  m.ttft_ms = Summarize(std::move(ttft));
  m.tpot_ms = Summarize(std::move(tpot));
  m.itl_ms = Summarize(std::move(itl));
  m.e2e_ms = Summarize(std::move(e2e));
  m.server_ttft_ms = Summarize(std::move(server_ttft));
  m.server_e2e_ms = Summarize(std::move(server_e2e));
  return m;
}

std::string JsonObjectWriter::Quote(absl::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          out += absl::StrFormat("\\u%04x", c);
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
  return out;
}

void JsonObjectWriter::AddString(absl::string_view key, absl::string_view value) {
  members_.push_back(absl::StrCat(Quote(key), ":", Quote(value)));
}

void JsonObjectWriter::AddNumber(absl::string_view key, double value) {
  // JSON has no NaN/Inf: write null for them.
  members_.push_back(absl::StrCat(
      Quote(key), ":", std::isfinite(value) ? absl::StrFormat("%.6g", value) : "null"));
}

void JsonObjectWriter::AddInt(absl::string_view key, int64_t value) {
  members_.push_back(absl::StrCat(Quote(key), ":", value));
}

void JsonObjectWriter::AddBool(absl::string_view key, bool value) {
  members_.push_back(absl::StrCat(Quote(key), ":", value ? "true" : "false"));
}

void JsonObjectWriter::AddRaw(absl::string_view key, absl::string_view json) {
  members_.push_back(absl::StrCat(Quote(key), ":", json));
}

std::string JsonObjectWriter::Finish() const {
  return absl::StrCat("{", absl::StrJoin(members_, ","), "}");
}

namespace {

void AppendSummary(absl::string_view name, const Summary& s, JsonObjectWriter* out) {
  out->AddNumber(absl::StrCat("mean_", name, "_ms"), s.mean);
  out->AddNumber(absl::StrCat("median_", name, "_ms"), s.median);
  out->AddNumber(absl::StrCat("std_", name, "_ms"), s.stddev);
  out->AddNumber(absl::StrCat("p90_", name, "_ms"), s.p90);
  out->AddNumber(absl::StrCat("p99_", name, "_ms"), s.p99);
  out->AddNumber(absl::StrCat("max_", name, "_ms"), s.max);
}

void FormatSummary(absl::string_view title, absl::string_view name, const Summary& s,
                   std::string* out) {
  absl::StrAppendFormat(out, "%s\n", std::string(title));
  absl::StrAppendFormat(out, "%-40s%12.2f\n", absl::StrCat("Mean ", name, " (ms):"),
                        s.mean);
  absl::StrAppendFormat(out, "%-40s%12.2f\n", absl::StrCat("Median ", name, " (ms):"),
                        s.median);
  absl::StrAppendFormat(out, "%-40s%12.2f\n", absl::StrCat("P90 ", name, " (ms):"),
                        s.p90);
  absl::StrAppendFormat(out, "%-40s%12.2f\n", absl::StrCat("P99 ", name, " (ms):"),
                        s.p99);
}

}  // namespace

void AppendMetricsJson(const BenchmarkMetrics& m, JsonObjectWriter* out) {
  out->AddInt("completed", m.completed);
  out->AddInt("failed", m.failed);
  out->AddInt("total_input_tokens", m.total_input_tokens);
  out->AddInt("total_output_tokens", m.total_output_tokens);
  out->AddNumber("duration_s", m.duration_s);
  out->AddNumber("request_throughput", m.request_throughput);
  out->AddNumber("output_throughput", m.output_throughput);
  out->AddNumber("total_token_throughput", m.total_token_throughput);
  if (m.request_goodput) {
    out->AddNumber("request_goodput", *m.request_goodput);
    out->AddInt("good_requests", m.good_requests);
  }
  AppendSummary("ttft", m.ttft_ms, out);
  AppendSummary("tpot", m.tpot_ms, out);
  AppendSummary("itl", m.itl_ms, out);
  AppendSummary("e2el", m.e2e_ms, out);
  out->AddNumber("mean_server_ttft_ms", m.server_ttft_ms.mean);
  out->AddNumber("mean_server_e2el_ms", m.server_e2e_ms.mean);
  JsonObjectWriter errors;
  for (const auto& [code, n] : m.errors_by_code) errors.AddInt(code, n);
  out->AddRaw("errors_by_code", errors.Finish());
}

std::string FormatMetrics(const BenchmarkMetrics& m, absl::string_view title) {
  std::string out;
  const std::string bar(52, '=');
  absl::StrAppendFormat(&out, "%s\n%s\n%s\n", bar, std::string(title), bar);
  absl::StrAppendFormat(&out, "%-40s%12d\n", "Successful requests:", m.completed);
  absl::StrAppendFormat(&out, "%-40s%12d\n", "Failed requests:", m.failed);
  for (const auto& [code, n] : m.errors_by_code) {
    absl::StrAppendFormat(&out, "%-40s%12d\n", absl::StrCat("  ", code, ":"), n);
  }
  absl::StrAppendFormat(&out, "%-40s%12.2f\n", "Benchmark duration (s):", m.duration_s);
  absl::StrAppendFormat(&out, "%-40s%12d\n", "Total input tokens:", m.total_input_tokens);
  absl::StrAppendFormat(&out, "%-40s%12d\n",
                        "Total generated tokens:", m.total_output_tokens);
  absl::StrAppendFormat(&out, "%-40s%12.2f\n",
                        "Request throughput (req/s):", m.request_throughput);
  if (m.request_goodput) {
    absl::StrAppendFormat(&out, "%-40s%12.2f\n",
                          "Request goodput (req/s):", *m.request_goodput);
  }
  absl::StrAppendFormat(&out, "%-40s%12.2f\n",
                        "Output token throughput (tok/s):", m.output_throughput);
  absl::StrAppendFormat(&out, "%-40s%12.2f\n",
                        "Total token throughput (tok/s):", m.total_token_throughput);
  FormatSummary("---------------Time to First Token----------------", "TTFT", m.ttft_ms,
                &out);
  FormatSummary("-----Time per Output Token (excl. 1st token)------", "TPOT", m.tpot_ms,
                &out);
  FormatSummary("---------------Inter-token Latency----------------", "ITL", m.itl_ms,
                &out);
  FormatSummary("----------------E2E Request Latency---------------", "E2EL", m.e2e_ms,
                &out);
  if (m.server_e2e_ms.count > 0) {
    absl::StrAppendFormat(&out, "%s\n",
                          "-----------Server-side (from final messages)-------");
    absl::StrAppendFormat(&out, "%-40s%12.2f\n",
                          "Mean server TTFT (ms):", m.server_ttft_ms.mean);
    absl::StrAppendFormat(&out, "%-40s%12.2f\n",
                          "Mean server E2EL (ms):", m.server_e2e_ms.mean);
  }
  absl::StrAppend(&out, bar, "\n");
  return out;
}

}  // namespace openelm::bench
