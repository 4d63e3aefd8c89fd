#include "stampede/stats.hpp"

#include <charconv>
#include <stdexcept>
#include <system_error>

namespace stampede {
namespace {

bool is_metric_name(std::string_view s) {
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    const bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    if (!letter && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

void append_counter(std::string& out, std::string_view prefix, std::string_view name, std::string_view unit,
                    std::string_view help, std::string_view value) {
  std::string metric(prefix);
  if (!metric.empty()) metric += '_';
  metric.append(name).append(unit).append("_total");
  out.append("# HELP ").append(metric).append(" ").append(help).append("\n");
  out.append("# TYPE ").append(metric).append(" counter\n");
  out.append(metric).append(" ").append(value).append("\n");
}

void append_stat(std::string& out, std::string_view prefix, std::string_view name, std::string_view help,
                 detail::stat_count value) {
  append_counter(out, prefix, name, "", help, std::to_string(value));
}

void append_stat(std::string& out, std::string_view prefix, std::string_view name, std::string_view help,
                 detail::stat_nanoseconds value) {
  char buf[32];
  const double seconds = std::chrono::duration<double>(value).count();
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, seconds);  // shortest exact form
  append_counter(out, prefix, name, "_seconds", help,
                 ec == std::errc() ? std::string_view(buf, static_cast<std::size_t>(end - buf)) : "NaN");
}

}  // namespace

std::string to_prometheus(const Stats& stats, std::string_view prefix) {
  if (!is_metric_name(prefix)) {
    throw std::invalid_argument("stampede::to_prometheus: prefix '" + std::string(prefix) +
                                "' is not a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)");
  }
  std::string out;
#define STAMPEDE_PROMETHEUS_COUNTER(name, kind, help) append_stat(out, prefix, #name, help, stats.name);
  STAMPEDE_COUNTERS(STAMPEDE_PROMETHEUS_COUNTER)
#undef STAMPEDE_PROMETHEUS_COUNTER
  return out;
}

}  // namespace stampede
