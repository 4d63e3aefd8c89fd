// benchmarks/bm_waves.cpp: DB hits under concurrent misses.
//
// A wave releases N callers at once (a std::barrier) on one cold key; the loader is a simulated
// DB call that sleeps D ms and counts its hits. The N caller threads are started once per
// benchmark, not per wave. One benchmark iteration is one wave; its manual time is the wave's
// wall time (release to the last caller's return).
//
// Strategies, all in this binary:
//   none               cache-aside over a mutex-guarded map: every caller that misses loads.
//   seed_lock_poll     a lock-and-poll cache (no coalescing): try the token lock once; the loser
//                      sleeps 100 ms, re-checks the cache once and loads itself if still empty.
//   stampede_blocking  stampede::Cache<std::string> with default options, a fresh key per wave.
//   stampede_swr       stampede::Cache in SWR mode on a ManualClock: the key is made stale
//                      before each wave, callers get the stale value, one refresh loads.
//   singleflight_floor no cache: one atomic word per wave, the first caller loads, the others
//                      block in std::atomic::wait until its notify_all. The floor of wake-up on
//                      OS threads, against which stampede_blocking's wake-up is compared.
//
// D = 5 and 50 ms for every N; D = 500 ms (the demos' default --db-ms) with fewer waves and
// callers (Profile::slow_waves, slow_callers).
//
// Counters: see wave.hpp (for stampede_swr, db_hits is counted after the refresh has run).
#include <algorithm>
#include <atomic>
#include <barrier>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "stampede/stampede.hpp"
#include "wave.hpp"

namespace stampede::bench {
namespace {

using namespace std::chrono_literals;

/// A mutex-guarded map: the cache of the two baselines. Thread-safe.
class LockedMap {
 public:
  std::optional<std::string> get(const std::string& key) {
    std::lock_guard l(mu_);
    auto it = map_.find(key);
    if (it == map_.end()) return std::nullopt;
    return it->second;
  }
  void put(const std::string& key, const std::string& value) {
    std::lock_guard l(mu_);
    map_[key] = value;
  }

 private:
  std::mutex mu_;
  std::unordered_map<std::string, std::string> map_;
};

class NoneStrategy {
 public:
  static constexpr bool kWaits = true;  // callers can wait for another caller's load
  std::string prepare_wave(int wave) { return "wave:" + std::to_string(wave); }
  std::string get(int /*caller*/, const std::string& key, SimulatedDb& db) {
    if (auto v = map_.get(key)) return *v;
    std::string v = db.load(key);
    map_.put(key, v);
    return v;
  }
  void after_wave() {}

 private:
  LockedMap map_;
};

class SeedLockPollStrategy {
 public:
  static constexpr bool kWaits = true;  // callers can wait for another caller's load
  std::string prepare_wave(int wave) { return "wave:" + std::to_string(wave); }
  std::string get(int /*caller*/, const std::string& key, SimulatedDb& db) {
    // 1. cache check
    if (auto v = map_.get(key)) return *v;
    // 2. miss: try the lock once (a 30 s lease)
    const std::string lock_key = "lock:cache:" + key;
    if (std::optional<LockToken> token = lock_.try_acquire(lock_key, 30s)) {
      struct Release {
        MemoryTokenLock& lock;
        const std::string& key;
        const std::string& token;
        ~Release() { lock.release(key, token); }
      } release{lock_, lock_key, token->token};
      // 3. double check, 4. compute, 5. store
      if (auto v = map_.get(key)) return *v;
      std::string v = db.load(key);
      map_.put(key, v);
      return v;
    }
    // lost the race: sleep 100 ms, re-check once, else compute without storing (the fallback)
    std::this_thread::sleep_for(100ms);
    if (auto v = map_.get(key)) return *v;
    return db.load(key);
  }
  void after_wave() {}

 private:
  LockedMap map_;
  MemoryTokenLock lock_;
};

class StampedeBlockingStrategy {
 public:
  static constexpr bool kWaits = true;  // callers can wait for another caller's load
  std::string prepare_wave(int wave) { return "wave:" + std::to_string(wave); }
  std::string get(int /*caller*/, const std::string& key, SimulatedDb& db) {
    return cache_.get_or_compute(key, [&] { return db.load(key); });
  }
  void after_wave() {}

 private:
  Cache<std::string> cache_;  // default options: the out-of-the-box behaviour
};

class StampedeSwrStrategy {
 public:
  static constexpr bool kWaits = false;  // callers get the stale value; nobody waits
  static constexpr auto kSoftTtl = 10s;
  std::string prepare_wave(int /*wave*/) {
    if (!warm_) {
      cache_.put(kKey, "value-of:" + std::string(kKey));
      warm_ = true;
    }
    clock_->advance(kSoftTtl + 1s);  // the entry is now stale but servable
    return kKey;
  }
  std::string get(int /*caller*/, const std::string& key, SimulatedDb& db) {
    return cache_.get_or_compute(key, [&db, key] { return db.load(key); });
  }
  void after_wave() { cache_.wait_idle(); }  // the refresh's load is counted in this wave

 private:
  static constexpr const char* kKey = "hot";
  std::shared_ptr<ManualClock> clock_ = std::make_shared<ManualClock>();
  Cache<std::string> cache_{{.mode = Mode::stale_while_revalidate,
                             .soft_ttl = kSoftTtl,
                             .swr_window = std::chrono::hours(24),
                             .clock = clock_}};
  bool warm_ = false;
};

/// A minimal singleflight: no map, no expiry, no stats. The wave's first caller wins the
/// compare-exchange and loads; every other caller blocks on the state word (a futex under
/// libstdc++) until the leader publishes the value and calls notify_all, then copies it.
/// Thread-safe for the callers of one wave; prepare_wave runs between waves (the wave barrier
/// orders it with the callers).
class SingleflightFloorStrategy {
 public:
  static constexpr bool kWaits = true;  // callers wait for the leader's load
  std::string prepare_wave(int wave) {
    state_.store(kIdle, std::memory_order_relaxed);
    value_.clear();
    return "wave:" + std::to_string(wave);
  }
  std::string get(int /*caller*/, const std::string& key, SimulatedDb& db) {
    int expected = kIdle;
    if (state_.compare_exchange_strong(expected, kLoading, std::memory_order_acquire)) {
      value_ = db.load(key);
      state_.store(kDone, std::memory_order_release);
      state_.notify_all();
      return value_;
    }
    while (state_.load(std::memory_order_acquire) != kDone) state_.wait(kLoading, std::memory_order_acquire);
    return value_;
  }
  void after_wave() {}

 private:
  static constexpr int kIdle = 0, kLoading = 1, kDone = 2;
  std::atomic<int> state_{kIdle};
  std::string value_;  // written by the leader before kDone, read by the others after it
};

template <class Strategy>
void BM_Wave(benchmark::State& state) {
  const auto n = static_cast<int>(state.range(0));
  SimulatedDb db{std::chrono::milliseconds(state.range(1))};
  Strategy strategy;
  run_waves(state, n, db, strategy);
  state.counters["N"] = n;
}

}  // namespace

void register_wave_benchmarks(const Profile& p) {
  auto add = [&](const char* name, void (*fn)(benchmark::State&)) {
    auto wave = [&](int n, int d, int waves) {
      benchmark::RegisterBenchmark(name, fn)
          ->Args({n, d})
          ->ArgNames({"N", "D_ms"})
          ->Iterations(waves)
          ->UseManualTime()
          ->Unit(benchmark::kMillisecond);
    };
    for (int d : {5, 50}) {
      for (int n : {1, 8, 64, 256, 1024}) wave(n, d, p.waves);
    }
    for (int n : p.slow_callers) wave(n, 500, p.slow_waves);
  };
  add("BM_Wave_none", BM_Wave<NoneStrategy>);
  add("BM_Wave_seed_lock_poll", BM_Wave<SeedLockPollStrategy>);
  add("BM_Wave_stampede_blocking", BM_Wave<StampedeBlockingStrategy>);
  add("BM_Wave_stampede_swr", BM_Wave<StampedeSwrStrategy>);
  add("BM_Wave_singleflight_floor", BM_Wave<SingleflightFloorStrategy>);
}

}  // namespace stampede::bench
