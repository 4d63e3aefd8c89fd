// benchmarks/bm_swr.cpp: stale-while-revalidate.
//
//   BM_SWR_HitLatency_fresh / _stale   one thread, each call timed on its own (two steady_clock
//       reads around it, the same overhead in both cases). Stale: the key is past its soft
//       expiry and its refresh is in flight (its loader blocks until the benchmark ends), which is
//       what every stale hit but the first of a soft expiry sees under traffic.
//   BM_SWR_RefreshesPerSoftExpiry      K threads read one hot key without pause; each iteration
//       steps a ManualClock past the soft expiry and waits until the refresh has stored. Counts
//       loader calls per soft expiry (target: exactly 1) and the stale hits served meanwhile.
#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.hpp"
#include "stampede/stampede.hpp"

namespace stampede::bench {
namespace {

using namespace std::chrono_literals;

constexpr auto kSoftTtl = 10s;

CacheOptions swr_options(std::shared_ptr<ManualClock> clock) {
  return {.mode = Mode::stale_while_revalidate,
          .soft_ttl = kSoftTtl,
          .swr_window = std::chrono::hours(24),
          .clock = std::move(clock)};
}

/// A one-shot gate: wait() blocks until open(). Thread-safe.
class Gate {
 public:
  void wait() {
    std::unique_lock l(mu_);
    cv_.wait(l, [&] { return open_; });
  }
  void open() {
    {
      std::lock_guard l(mu_);
      open_ = true;
    }
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

void hit_latency(benchmark::State& state, bool stale) {
  auto clock = std::make_shared<ManualClock>();
  auto gate = std::make_shared<Gate>();
  auto loads = std::make_shared<std::atomic<int>>(0);
  auto loader = [gate, loads] {
    loads->fetch_add(1);
    gate->wait();
    return std::string("refreshed-v");
  };
  std::vector<double> us;
  us.reserve(static_cast<std::size_t>(state.max_iterations));
  {
    Cache<std::string> cache(swr_options(clock));
    cache.put("hot", "value-v1");
    if (stale) {
      clock->advance(kSoftTtl + 1s);
      // The first stale hit queues the refresh (and starts the refresher thread); its loader now
      // blocks on the gate, so the measured hits below all find the entry stale.
      benchmark::DoNotOptimize(cache.get_or_compute("hot", loader));
    }
    for (auto _ : state) {
      const std::int64_t t0 = now_ns();
      std::string v = cache.get_or_compute("hot", loader);
      const std::int64_t t1 = now_ns();
      benchmark::DoNotOptimize(v);
      us.push_back(static_cast<double>(t1 - t0) * 1e-3);
    }
    const Stats s = cache.stats();
    state.counters["stale_hits"] = static_cast<double>(s.stale_hits);
    state.counters["fresh_hits"] = static_cast<double>(s.hits);
    gate->open();
    cache.wait_idle();
  }
  state.counters["loads"] = loads->load();
  report_latency(state, "lat", std::move(us), /*with_p999=*/true);
}

void BM_SWR_HitLatency_fresh(benchmark::State& state) { hit_latency(state, false); }
void BM_SWR_HitLatency_stale(benchmark::State& state) { hit_latency(state, true); }

void BM_SWR_RefreshesPerSoftExpiry(benchmark::State& state) {
  const auto readers = static_cast<int>(state.range(0));
  const auto delay = std::chrono::milliseconds(state.range(1));
  auto clock = std::make_shared<ManualClock>();
  auto loads = std::make_shared<std::atomic<int>>(0);
  auto loader = [loads, delay] {
    loads->fetch_add(1);
    std::this_thread::sleep_for(delay);
    return std::string("refreshed-v");
  };
  Cache<std::string> cache(swr_options(clock));
  cache.put("hot", "value-v1");

  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> calls{0};
  std::vector<std::jthread> traffic;
  for (int i = 0; i < readers; ++i) {
    traffic.emplace_back([&] {
      std::uint64_t n = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        benchmark::DoNotOptimize(cache.get_or_compute("hot", loader));
        ++n;
      }
      calls.fetch_add(n);
    });
  }

  int missed = 0;
  for (auto _ : state) {
    const int before = loads->load();
    const std::int64_t t0 = now_ns();
    clock->advance(kSoftTtl + 1ms);
    // Wait until a refresh has started, then until it has stored (the refresher is idle).
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (loads->load() == before && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::yield();
    }
    if (loads->load() == before) ++missed;
    cache.wait_idle();
    state.SetIterationTime(static_cast<double>(now_ns() - t0) * 1e-9);
  }
  stop.store(true);
  traffic.clear();
  cache.wait_idle();

  const Stats s = cache.stats();
  const double expiries = static_cast<double>(std::max<benchmark::IterationCount>(1, state.iterations()));
  state.counters["readers"] = readers;
  state.counters["refreshes_per_expiry"] = loads->load() / expiries;
  state.counters["stored_refreshes_per_expiry"] = static_cast<double>(s.refreshes) / expiries;
  state.counters["stale_hits_per_expiry"] = static_cast<double>(s.stale_hits) / expiries;
  state.counters["refreshes_dropped"] = static_cast<double>(s.refreshes_dropped);
  state.counters["expiries_without_refresh"] = missed;
  state.counters["reads"] = static_cast<double>(calls.load());
}

}  // namespace

void register_swr_benchmarks(const Profile& p) {
  benchmark::RegisterBenchmark("BM_SWR_HitLatency_fresh", BM_SWR_HitLatency_fresh)
      ->Iterations(p.latency_samples)
      ->Unit(benchmark::kNanosecond);
  benchmark::RegisterBenchmark("BM_SWR_HitLatency_stale", BM_SWR_HitLatency_stale)
      ->Iterations(p.latency_samples)
      ->Unit(benchmark::kNanosecond);
  benchmark::RegisterBenchmark("BM_SWR_RefreshesPerSoftExpiry", BM_SWR_RefreshesPerSoftExpiry)
      ->Args({2, 5})
      ->Args({8, 5})
      ->ArgNames({"readers", "D_ms"})
      ->Iterations(p.soft_expiries)
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond);
}

}  // namespace stampede::bench
