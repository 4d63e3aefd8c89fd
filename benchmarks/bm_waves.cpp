// benchmarks/bm_waves.cpp: DB hits under concurrent misses (issue 4, item 1).
//
// A wave releases N callers at once (a std::barrier) on one cold key; the loader is a simulated
// DB call that sleeps D ms and counts its hits. The N caller threads are started once per
// benchmark, not per wave. One benchmark iteration is one wave; its manual time is the wave's
// wall time (release to the last caller's return).
//
// Strategies, all in this binary:
//   none               cache-aside over a mutex-guarded map: every caller that misses loads.
//   seed_lock_poll     the seeds' CacheWithLock (seed 001): try the token lock once; the loser
//                      sleeps 100 ms, re-checks the cache once and loads itself if still empty.
//   stampede_blocking  stampede::Cache<std::string> with default options, a fresh key per wave.
//   stampede_swr       stampede::Cache in SWR mode on a ManualClock: the key is made stale
//                      before each wave, callers get the stale value, one refresh loads.
//
// Counters (per wave, averaged; latencies pooled over all callers of all waves):
//   db_hits            loader calls per wave (for stampede_swr: counted after the refresh ran)
//   lat_*_us           caller latency: from the caller's own start to its return
//   wake_*_us          for coalesced callers (did not load, started before a load returned):
//                      from the latest loader return before the caller's return to that return
//   leader_tail_*_us   for callers that loaded: from their loader's return to their own return
//                      (storing, releasing the lock, publishing to the waiters)
#include <algorithm>
#include <atomic>
#include <barrier>
#include <optional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <stampede/stampede.hpp>

#include "bench_util.hpp"

namespace stampede::bench {
namespace {

using namespace std::chrono_literals;

thread_local bool t_ran_loader = false;
thread_local std::int64_t t_loader_return = 0;  // when this thread's last load returned

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
  std::string get(const std::string& key, SimulatedDb& db) {
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
  std::string get(const std::string& key, SimulatedDb& db) {
    // 1. cache check
    if (auto v = map_.get(key)) return *v;
    // 2. miss: try the lock once (30 s lease, as in the seed)
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
  std::string get(const std::string& key, SimulatedDb& db) {
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
  std::string get(const std::string& key, SimulatedDb& db) {
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

template <class Strategy>
void BM_Wave(benchmark::State& state) {
  const auto n = static_cast<int>(state.range(0));
  SimulatedDb db{std::chrono::milliseconds(state.range(1))};
  Strategy strategy;

  struct Slot {
    std::int64_t start = 0, end = 0, loader_return = 0;
    bool loaded = false, failed = false;
  };
  std::vector<Slot> slots(static_cast<std::size_t>(n));
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
        Slot& s = slots[static_cast<std::size_t>(i)];
        t_ran_loader = false;
        s.start = now_ns();
        try {
          std::string v = strategy.get(key, db);
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

  std::vector<double> latency_us, wake_us, tail_us;
  double hits_sum = 0, hits_max = 0, coalesced = 0, errors = 0;
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

    const double hits = db.hits();
    hits_sum += hits;
    hits_max = std::max(hits_max, hits);
    const std::vector<std::int64_t> returns = db.returns();
    for (const Slot& s : slots) {
      latency_us.push_back(static_cast<double>(s.end - s.start) * 1e-3);
      if (s.failed) ++errors;
      if (s.loaded && Strategy::kWaits) tail_us.push_back(static_cast<double>(s.end - s.loader_return) * 1e-3);
      if (!Strategy::kWaits || s.loaded || returns.empty()) continue;
      // the latest loader return before this caller returned
      auto it = std::upper_bound(returns.begin(), returns.end(), s.end);
      if (it == returns.begin()) continue;
      const std::int64_t loader_return = *std::prev(it);
      if (s.start >= loader_return) continue;  // arrived after the value was there: a plain hit
      ++coalesced;
      wake_us.push_back(static_cast<double>(s.end - loader_return) * 1e-3);
    }
  }
  stop.store(true);
  start.arrive_and_wait();
  callers.clear();  // joins

  const double waves = std::max(1, wave);
  state.counters["N"] = n;
  state.counters["db_hits"] = hits_sum / waves;
  state.counters["db_hits_max"] = hits_max;
  state.counters["coalesced"] = coalesced / waves;
  state.counters["errors"] = errors;
  report_latency(state, "lat", std::move(latency_us));
  report_latency(state, "wake", std::move(wake_us));
  report_latency(state, "leader_tail", std::move(tail_us));
}

}  // namespace

void register_wave_benchmarks(const Profile& p) {
  auto add = [&](const char* name, void (*fn)(benchmark::State&)) {
    for (int d : {5, 50}) {
      for (int n : {1, 8, 64, 256, 1024}) {
        benchmark::RegisterBenchmark(name, fn)
            ->Args({n, d})
            ->ArgNames({"N", "D_ms"})
            ->Iterations(p.waves)
            ->UseManualTime()
            ->Unit(benchmark::kMillisecond);
      }
    }
  };
  add("BM_Wave_none", BM_Wave<NoneStrategy>);
  add("BM_Wave_seed_lock_poll", BM_Wave<SeedLockPollStrategy>);
  add("BM_Wave_stampede_blocking", BM_Wave<StampedeBlockingStrategy>);
  add("BM_Wave_stampede_swr", BM_Wave<StampedeSwrStrategy>);
}

}  // namespace stampede::bench
