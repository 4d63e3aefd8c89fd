// benchmarks/wave.hpp: the stampede wave runner shared by the in-process and Redis suites.
//
// A wave releases n callers at once (a std::barrier) on one key; the loader is a SimulatedDb call
// that sleeps D ms and counts its hits. Caller threads start once per benchmark, not per wave;
// one benchmark iteration is one wave, its manual time the wave's wall time.
//
//   SimulatedDb db{50ms};
//   MyStrategy strategy;   // prepare_wave(int) -> key, get(caller, key, db) -> value, after_wave()
//   run_waves(state, n, db, strategy);
//
// Counters (per wave, averaged; latencies pooled over all callers of all waves):
//   db_hits            loader calls per wave (max over waves in db_hits_max)
//   lat_*_us           caller latency: from the caller's own start to its return
//   wake_*_us          for coalesced callers (did not load, started before a load returned):
//                      from the latest loader return before the caller's return to that return
//   leader_tail_*_us   for callers that loaded: from their loader's return to their own return
//                      (storing, releasing the lock, publishing to the waiters)
#pragma once

#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <iterator>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.hpp"

namespace stampede::bench {

inline thread_local bool t_ran_loader = false;
inline thread_local std::int64_t t_loader_return = 0;  // when this thread's last load returned

/// The simulated database: sleeps D ms per call and counts its calls. Thread-safe.
class SimulatedDb {
 public:
  explicit SimulatedDb(std::chrono::milliseconds delay) : delay_(delay) {}

  std::string load(const std::string& key) {
    hits_.fetch_add(1, std::memory_order_relaxed);
    t_ran_loader = true;
    std::this_thread::sleep_for(delay_);
    std::string value = "value-of:" + key;
    const std::int64_t t = now_ns();  // the loader's return
    t_loader_return = t;
    std::lock_guard l(mu_);
    returns_.push_back(t);
    return value;
  }
  void reset() {
    hits_.store(0);
    std::lock_guard l(mu_);
    returns_.clear();
  }
  int hits() const { return hits_.load(); }
  std::vector<std::int64_t> returns() {
    std::lock_guard l(mu_);
    std::vector<std::int64_t> r = returns_;
    std::sort(r.begin(), r.end());
    return r;
  }

 private:
  std::chrono::milliseconds delay_;
  std::atomic<int> hits_{0};
  std::mutex mu_;
  std::vector<std::int64_t> returns_;
};

/// One caller of a wave: when it started and returned, and whether it ran the loader or failed.
struct WaveSlot {
  std::int64_t start = 0, end = 0, loader_return = 0;
  bool loaded = false, failed = false;
};

/// The counters of a benchmark's waves (see the file's header), shared by the thread waves and the
/// async ones (bm_wave_async.cpp).
class WaveTally {
 public:
  /// Adds one wave. `waits`: the strategy's callers can wait for another caller's load (else no
  /// caller counts as woken).
  void add(SimulatedDb& db, const std::vector<WaveSlot>& slots, bool waits) {
    const double hits = db.hits();
    hits_sum_ += hits;
    hits_max_ = std::max(hits_max_, hits);
    ++waves_;
    const std::vector<std::int64_t> returns = db.returns();
    for (const WaveSlot& s : slots) {
      latency_us_.push_back(static_cast<double>(s.end - s.start) * 1e-3);
      if (s.failed) ++errors_;
      if (s.loaded && waits) tail_us_.push_back(static_cast<double>(s.end - s.loader_return) * 1e-3);
      if (!waits || s.loaded || returns.empty()) continue;
      // the latest loader return before this caller returned
      auto it = std::upper_bound(returns.begin(), returns.end(), s.end);
      if (it == returns.begin()) continue;
      const std::int64_t loader_return = *std::prev(it);
      if (s.start >= loader_return) continue;  // arrived after the value was there: a plain hit
      ++coalesced_;
      wake_us_.push_back(static_cast<double>(s.end - loader_return) * 1e-3);
    }
  }
  /// Sets the benchmark's counters (per-wave averages, maxima, latency percentiles).
  void report(benchmark::State& state) {
    const double waves = std::max(1, waves_);
    state.counters["db_hits"] = hits_sum_ / waves;
    state.counters["db_hits_max"] = hits_max_;
    state.counters["coalesced"] = coalesced_ / waves;
    state.counters["errors"] = errors_;
    report_latency(state, "lat", std::move(latency_us_));
    report_latency(state, "wake", std::move(wake_us_));
    report_latency(state, "leader_tail", std::move(tail_us_));
  }

 private:
  std::vector<double> latency_us_, wake_us_, tail_us_;
  double hits_sum_ = 0, hits_max_ = 0, coalesced_ = 0, errors_ = 0;
  int waves_ = 0;
};

template <class Strategy>
void run_waves(benchmark::State& state, int n, SimulatedDb& db, Strategy& strategy) {
  std::vector<WaveSlot> slots(static_cast<std::size_t>(n));
  std::barrier start(n + 1), done(n + 1);
  std::atomic<bool> stop{false};
  std::string key;  // written before `start`, read after it: the barrier orders the accesses

  std::vector<std::jthread> callers;
  callers.reserve(slots.size());
  for (int i = 0; i < n; ++i) {
    callers.emplace_back([&, i] {
      for (;;) {
        start.arrive_and_wait();
        if (stop.load()) return;
        WaveSlot& s = slots[static_cast<std::size_t>(i)];
        t_ran_loader = false;
        s.start = now_ns();
        try {
          std::string v = strategy.get(i, key, db);
          benchmark::DoNotOptimize(v);
          s.failed = false;
        } catch (const std::exception&) {
          s.failed = true;
        }
        s.end = now_ns();
        s.loaded = t_ran_loader;
        s.loader_return = t_loader_return;
        done.arrive_and_wait();
      }
    });
  }

  WaveTally tally;
  int wave = 0;
  for (auto _ : state) {
    key = strategy.prepare_wave(wave++);
    db.reset();
    const std::int64_t released = now_ns();
    start.arrive_and_wait();
    done.arrive_and_wait();
    const std::int64_t finished = now_ns();
    strategy.after_wave();
    state.SetIterationTime(static_cast<double>(finished - released) * 1e-9);

    tally.add(db, slots, Strategy::kWaits);
  }
  stop.store(true);
  start.arrive_and_wait();
  callers.clear();  // joins

  tally.report(state);
}

}  // namespace stampede::bench
