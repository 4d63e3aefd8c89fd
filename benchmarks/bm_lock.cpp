// benchmarks/bm_lock.cpp: what a leader pays around its load for the in-process token lock.
//
//   BM_Lock_LeaseCycle/watchdog:0|1   try_acquire + LockLease + release on MemoryTokenLock, the
//       sequence Cache<T>::lead() runs for every load, with and without the renewal watchdog
//       (Cache always enables it). Explains the part of the wake-up latency that is spent
//       before the value is published to the waiters.
//   BM_Lock_ReleaseAfterLoad/watchdog:0|1   only the release() of a lease held across a 5 ms
//       sleep (a simulated load), timed by itself: the watchdog thread is then idle and must be
//       woken and joined, which is what a leader pays after a real load.
#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "bench_util.hpp"
#include "stampede/stampede.hpp"

namespace stampede::bench {
namespace {

using namespace std::chrono_literals;

void BM_Lock_LeaseCycle(benchmark::State& state) {
  const bool watchdog = state.range(0) != 0;
  auto lock = std::make_shared<MemoryTokenLock>();
  const std::string key = "k";
  for (auto _ : state) {
    std::optional<LockToken> token = lock->try_acquire(key, 5s);
    if (!token) {
      state.SkipWithError("lock unexpectedly held");
      break;
    }
    LockLease lease(lock, key, *token, 5s, WatchdogOptions{.enabled = watchdog});
    benchmark::DoNotOptimize(lease.release());
  }
}

void BM_Lock_ReleaseAfterLoad(benchmark::State& state) {
  const bool watchdog = state.range(0) != 0;
  auto lock = std::make_shared<MemoryTokenLock>();
  const std::string key = "k";
  for (auto _ : state) {
    std::optional<LockToken> token = lock->try_acquire(key, 5s);
    if (!token) {
      state.SkipWithError("lock unexpectedly held");
      break;
    }
    LockLease lease(lock, key, *token, 5s, WatchdogOptions{.enabled = watchdog});
    std::this_thread::sleep_for(5ms);
    const std::int64_t t0 = now_ns();
    benchmark::DoNotOptimize(lease.release());
    state.SetIterationTime(static_cast<double>(now_ns() - t0) * 1e-9);
  }
}

}  // namespace

void register_lock_benchmarks(const Profile& p) {
  auto* b = benchmark::RegisterBenchmark("BM_Lock_LeaseCycle", BM_Lock_LeaseCycle)
                ->Arg(0)
                ->Arg(1)
                ->ArgName("watchdog")
                ->Unit(benchmark::kMicrosecond);
  if (p.min_time > 0) {
    b->MinTime(p.min_time);
  } else {
    b->Iterations(10);
  }
  benchmark::RegisterBenchmark("BM_Lock_ReleaseAfterLoad", BM_Lock_ReleaseAfterLoad)
      ->Arg(0)
      ->Arg(1)
      ->ArgName("watchdog")
      ->Iterations(p.smoke() ? 2 : 40)
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond);
}

}  // namespace stampede::bench
