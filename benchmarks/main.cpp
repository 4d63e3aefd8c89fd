// benchmarks/main.cpp: the in-process benchmark suite (waves, hit path, SWR).
//
// Usage (scripts/bench.sh runs it this way):
//   stampede_bench --stampede_profile=quick --benchmark_out=bench-out/inprocess.json
//   stampede_bench --stampede_profile=smoke --benchmark_filter=BM_Wave_
#include <cstdio>
#include <exception>

#include "bench_util.hpp"

namespace stampede::bench {
void register_wave_benchmarks(const Profile& p);
void register_hit_path_benchmarks(const Profile& p);
void register_swr_benchmarks(const Profile& p);
void register_lock_benchmarks(const Profile& p);
#ifdef STAMPEDE_BENCH_WITH_ASIO
void register_wave_async_benchmarks(const Profile& p);  // bm_wave_async.cpp (needs stampede::asio)
#endif
}  // namespace stampede::bench

int main(int argc, char** argv) {
  namespace sb = stampede::bench;
  sb::Profile profile;
  try {
    profile = sb::parse_profile(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "stampede_bench: %s\n", e.what());
    return 2;
  }
  sb::register_wave_benchmarks(profile);
#ifdef STAMPEDE_BENCH_WITH_ASIO
  sb::register_wave_async_benchmarks(profile);
#endif
  sb::register_hit_path_benchmarks(profile);
  sb::register_swr_benchmarks(profile);
  sb::register_lock_benchmarks(profile);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 2;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
