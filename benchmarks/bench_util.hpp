// benchmarks/bench_util.hpp: what the stampede benchmarks share: run profiles, percentiles, timing.
//
// Every benchmark binary takes --stampede_profile=smoke|quick|full (removed from argv before
// Google Benchmark parses the rest) and registers its benchmarks with bounds from that profile.
//
//   stampede::bench::Profile p = stampede::bench::parse_profile(argc, argv);
//   register_wave_benchmarks(p);
//   benchmark::Initialize(&argc, argv);
#pragma once

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace stampede::bench {

/// How long and how large a run is. smoke: one short iteration each (CI); quick: < 3 min in
/// total on 2 cores; full: the figures that get published.
struct Profile {
  std::string name = "quick";
  /// Waves per (strategy, N, D) in the stampede benchmarks.
  int waves = 5;
  /// Waves per (strategy, N) with the slow loader (D = 500 ms), and the N it runs with.
  int slow_waves = 2;
  std::vector<int> slow_callers = {64, 1024};
  /// Keys of the "spread" hit-path case (1M in full; reduced in quick/smoke, reported in the output).
  std::size_t spread_keys = 1'000'000;
  /// Minimum measuring time of hit-path benchmarks in seconds; 0 = one iteration per thread.
  double min_time = 0.2;
  /// Soft expiries stepped in the SWR refresh benchmark.
  int soft_expiries = 20;
  /// Calls measured one by one in latency-distribution benchmarks (SWR, Redis hit path).
  int latency_samples = 200'000;
  /// Repetitions of the throughput benchmarks (hit paths); > 1 reports their median only.
  int repetitions = 1;
  bool smoke() const { return name == "smoke"; }
};

/// Reads and removes --stampede_profile=NAME from argv (default: quick).
/// @throws std::invalid_argument for an unknown profile name.
inline Profile parse_profile(int& argc, char** argv) {
  Profile p;
  constexpr std::string_view flag = "--stampede_profile=";
  int out = 1;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg.substr(0, flag.size()) == flag) {
      p.name = std::string(arg.substr(flag.size()));
    } else {
      argv[out++] = argv[i];
    }
  }
  argc = out;
  if (p.name == "smoke") {
    p.waves = 1;
    p.slow_waves = 1;
    p.slow_callers = {64};
    p.spread_keys = 10'000;
    p.min_time = 0;
    p.soft_expiries = 2;
    p.latency_samples = 1'000;
  } else if (p.name == "quick") {
    p.waves = 5;
    p.slow_waves = 2;
    p.slow_callers = {64, 1024};
    p.spread_keys = 100'000;
    p.min_time = 0.2;
    p.soft_expiries = 20;
    p.latency_samples = 100'000;
  } else if (p.name == "full") {
    p.waves = 20;
    p.slow_waves = 5;
    p.slow_callers = {1, 8, 64, 256, 1024};
    p.spread_keys = 1'000'000;
    p.min_time = 1.0;
    p.soft_expiries = 100;
    p.latency_samples = 1'000'000;
    p.repetitions = 3;
  } else {
    throw std::invalid_argument("unknown --stampede_profile '" + p.name + "' (smoke, quick, full)");
  }
  benchmark::AddCustomContext("stampede_profile", p.name);
  benchmark::AddCustomContext("spread_keys", std::to_string(p.spread_keys));
  benchmark::AddCustomContext("repetitions", std::to_string(p.repetitions));
  return p;
}

/// Applies the profile's repetitions to a throughput benchmark (median reported when > 1).
inline benchmark::internal::Benchmark* repeat(benchmark::internal::Benchmark* b, const Profile& p) {
  if (p.repetitions > 1) b->Repetitions(p.repetitions)->ReportAggregatesOnly(true);
  return b;
}

/// Monotonic nanoseconds (steady_clock).
inline std::int64_t now_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

/// The q-quantile (0 <= q <= 1, nearest rank) of `v`; sorts `v`. 0 for an empty vector.
inline double quantile(std::vector<double>& v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const auto rank = static_cast<std::size_t>(q * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(rank, v.size() - 1)];
}

/// Sets p50/p99/max (and optionally p999) counters named `prefix`_p50_us etc. from samples in us.
inline void report_latency(benchmark::State& state, const std::string& prefix, std::vector<double> us,
                           bool with_p999 = false) {
  if (us.empty()) return;
  state.counters[prefix + "_p50_us"] = quantile(us, 0.50);
  state.counters[prefix + "_p99_us"] = quantile(us, 0.99);
  if (with_p999) state.counters[prefix + "_p999_us"] = quantile(us, 0.999);
  state.counters[prefix + "_max_us"] = us.back();
  state.counters[prefix + "_samples"] = static_cast<double>(us.size());
}

/// A value of about 1 KiB, the "1 KiB struct" of the hit-path benchmarks.
struct KiB {
  std::uint64_t id = 0;
  char payload[1016] = {};
};
static_assert(sizeof(KiB) == 1024);

}  // namespace stampede::bench
