// demos/common.hpp: small helpers shared by the demo programs: durations, percentiles, numbers as
// printed. The command line is in cli.hpp, the backend choice in backend.hpp.
//
// Stateless functions: safe from any thread.
#pragma once

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <string>
#include <system_error>
#include <vector>

namespace demo {

/// Milliseconds as a double, for latencies.
inline double to_ms(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

/// Seconds given as a decimal number (e.g. "0.5") -> milliseconds, at least 1 when positive.
inline std::chrono::milliseconds seconds_to_ms(double seconds) {
  auto ms = static_cast<std::int64_t>(std::llround(seconds * 1000.0));
  return std::chrono::milliseconds(seconds > 0 && ms == 0 ? 1 : ms);
}

/// The q-quantile (0..1) of `values` by nearest rank; 0 for none.
inline double quantile(std::vector<double> values, double q) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  auto rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(values.size())));
  return values[std::min(values.size() - 1, rank == 0 ? 0 : rank - 1)];
}

/// Rounds to 0.01 so that printed latencies stay readable.
inline double round2(double v) { return std::round(v * 100.0) / 100.0; }

/// @return the shortest text that reads back as `v`: "0.25" rather than "0.250000".
inline std::string format_number(double v) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return ec == std::errc{} ? std::string(buf, end) : std::to_string(v);
}

}  // namespace demo
