// fuzz/cache_ops_fuzzer.cpp: Cache<std::string> over the memory backend against a reference model.
//
// The input picks a mode (blocking or stale-while-revalidate) and a capacity (1-4 entries, so
// eviction happens), then drives up to 64 steps on 6 keys: get, get_or_compute whose loader
// returns a value or throws (and may move the clock while it runs), put, invalidate, and moves of
// a ManualClock forward or back. Every value is unique ("k<key>:<id>"), so the model knows exactly
// which write a returned value came from. Single-threaded; background refreshes (SWR) are waited
// for after each step, so the run is deterministic.
//
// Invariants checked after every step (a violation prints what happened and aborts):
// - A returned value is the key's latest write (load, refresh or put) and was not invalidated
//   since: never older than an invalidate/put that completed before the call, never another key's.
// - A value is served only while the model says it is alive (now < its hard expiry), and counted
//   as a fresh hit only before its soft expiry.
// - get_or_compute on a miss runs the loader exactly once and returns its value (or rethrows its
//   exception); on a live value it runs none (a stale SWR hit runs exactly one refresh).
//   get never runs the loader.
// - Fences handed out per key only grow; every write reaches the store with a fence above every
//   fence the key has seen (write or invalidation), is accepted, and a read returns only the
//   entry of the key's last accepted write.
// What the model allows: an entry may vanish once the store reports an eviction after its write
// (then a miss and a new load are correct), and an expired entry may come back to life when the
// clock moves back (the memory store keeps it until overwritten).
//
//   build/fuzz/fuzz/cache_ops_fuzzer fuzz/corpus/cache_ops_fuzzer -max_total_time=60
#include <fuzzer/FuzzedDataProvider.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "stampede/cache.hpp"
#include "stampede/clock.hpp"
#include "stampede/memory/backend.hpp"
#include "stampede/token_lock.hpp"

namespace {

using namespace std::chrono_literals;
using time_point = std::chrono::system_clock::time_point;

constexpr int kKeys = 6;
constexpr int kMaxSteps = 64;
constexpr std::chrono::milliseconds kTtl{1000};     // blocking mode
constexpr std::chrono::milliseconds kSoftTtl{400};  // SWR mode
constexpr std::chrono::milliseconds kSwrWindow{600};

std::string trace;  // the steps of the current input, printed with a violation

[[noreturn]] void violation(const std::string& what) {
  std::fprintf(stderr, "cache_ops_fuzzer: invariant violated: %s\nsteps:\n%s", what.c_str(), trace.c_str());
  std::abort();
}

std::string key_name(int k) { return "k" + std::to_string(k); }
std::string value_of(int k, std::uint64_t id) { return key_name(k) + ":" + std::to_string(id); }

/// A TokenLock that checks that the fences it hands out for a key only grow. Thread-safe.
class FenceCheckingLock final : public stampede::TokenLock {
 public:
  explicit FenceCheckingLock(std::shared_ptr<stampede::TokenLock> inner) : inner_(std::move(inner)) {}

 private:
  std::optional<stampede::LockToken> do_try_acquire(std::string_view key,
                                                    std::chrono::milliseconds ttl) override {
    auto token = inner_->try_acquire(key, ttl);
    if (token) check(key, token->fence);
    return token;
  }
  bool do_release(std::string_view key, std::string_view token) override {
    return inner_->release(key, token);
  }
  bool do_renew(std::string_view key, std::string_view token, std::chrono::milliseconds ttl) override {
    return inner_->renew(key, token, ttl);
  }
  std::uint64_t do_bump_fence(std::string_view key) override {
    const std::uint64_t fence = inner_->bump_fence(key);
    check(key, fence);
    return fence;
  }
  std::unique_ptr<stampede::Subscription> do_subscribe(std::string_view key) override {
    return inner_->subscribe(key);
  }
  void do_notify(std::string_view key) override { inner_->notify(key); }

  void check(std::string_view key, std::uint64_t fence) {
    std::lock_guard l(mu_);
    std::uint64_t& last = last_[std::string(key)];
    if (fence <= last) {
      violation("fence of " + std::string(key) + " went from " + std::to_string(last) + " to " +
                std::to_string(fence));
    }
    last = fence;
  }
  std::shared_ptr<stampede::TokenLock> inner_;
  std::mutex mu_;
  std::map<std::string, std::uint64_t> last_;
};

/// A Store that checks every write is accepted and every read returns the last accepted write
/// of its key (or nothing). Thread-safe.
class CheckingStore final : public stampede::Store<std::string> {
 public:
  explicit CheckingStore(std::shared_ptr<stampede::MemoryStore<std::string>> inner)
      : inner_(std::move(inner)) {}

  std::optional<stampede::Entry<std::string>> get(std::string_view key, time_point now) override {
    auto e = inner_->get(key, now);
    if (e) {
      std::lock_guard l(mu_);
      const Written& w = written_[std::string(key)];
      if (!w.value || e->fence != w.fence || e->value != *w.value) {
        violation("store returned " + e->value + " (fence " + std::to_string(e->fence) + ") for " +
                  std::string(key) + "; last accepted write: " + (w.value ? *w.value : "none/invalidated") +
                  " (fence " + std::to_string(w.fence) + ")");
      }
    }
    return e;
  }
  stampede::PutResult put(std::string_view key, const stampede::Entry<std::string>& entry,
                          time_point now) override {
    const stampede::PutResult r = inner_->put(key, entry, now);
    std::lock_guard l(mu_);
    Written& w = written_[std::string(key)];
    // Single-threaded, every write carries a fence drawn for it: higher than any the key has seen.
    if (entry.fence <= w.fence) {
      violation("write of " + entry.value + " carries fence " + std::to_string(entry.fence) +
                ", not above the key's highest fence " + std::to_string(w.fence));
    }
    if (r != stampede::PutResult::stored) {
      violation("store refused " + entry.value + " with fence " + std::to_string(entry.fence) +
                " (highest fence written for the key: " + std::to_string(w.fence) + ")");
    }
    w.value = entry.value;
    w.fence = entry.fence;
    return r;
  }
  void invalidate(std::string_view key, std::uint64_t fence) override {
    inner_->invalidate(key, fence);
    std::lock_guard l(mu_);
    Written& w = written_[std::string(key)];
    w.value.reset();
    w.fence = std::max(w.fence, fence);
  }
  void add_counters(stampede::BackendCounters& counters) const override { inner_->add_counters(counters); }

 private:
  struct Written {
    std::optional<std::string> value;  // none: never written, or invalidated since
    std::uint64_t fence = 0;
  };
  std::shared_ptr<stampede::MemoryStore<std::string>> inner_;
  std::mutex mu_;
  std::map<std::string, Written> written_;
};

struct LoadError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Every loader run, in order (a refresh runs on the refresher thread). Thread-safe.
struct LoadLog {
  struct Run {
    int key;
    std::uint64_t id;
    bool threw;
    time_point done;  // the clock when the loader returned (what the cache stamps the write with)
  };
  std::mutex mu;
  std::vector<Run> runs;

  std::vector<Run> since(std::size_t n) {
    std::lock_guard l(mu);
    return std::vector<Run>(runs.begin() + static_cast<std::ptrdiff_t>(n), runs.end());
  }
  std::size_t size() {
    std::lock_guard l(mu);
    return runs.size();
  }
};

/// What the store must hold for a key, as far as the model knows.
struct Live {
  std::uint64_t id;
  time_point soft;
  time_point hard;
};

struct Model {
  bool swr = false;
  std::array<std::optional<Live>, kKeys> latest{};
  std::array<std::uint64_t, kKeys> evictions_at_write{};

  Live written_at(std::uint64_t id, time_point t) const {
    return swr ? Live{id, t + kSoftTtl, t + kSoftTtl + kSwrWindow} : Live{id, t + kTtl, t + kTtl};
  }
};

std::string describe(const std::optional<Live>& l) {
  if (!l) return "nothing";
  return "id " + std::to_string(l->id) + " soft " +
         std::to_string(
             std::chrono::duration_cast<std::chrono::milliseconds>(l->soft.time_since_epoch()).count() %
             1000000) +
         " hard " +
         std::to_string(
             std::chrono::duration_cast<std::chrono::milliseconds>(l->hard.time_since_epoch()).count() %
             1000000);
}

std::string ms_of(time_point t) {
  return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count() %
                        1000000);
}

struct Counts {
  std::uint64_t hits, misses, stale_hits, loads;
  static Counts of(const stampede::Stats& s) { return {s.hits, s.misses, s.stale_hits, s.loads}; }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  trace.clear();
  Model model;
  model.swr = in.ConsumeBool();
  const std::size_t max_entries = in.ConsumeIntegralInRange<std::size_t>(1, 4);
  trace += std::string(model.swr ? "mode swr" : "mode blocking") + ", max_entries " +
           std::to_string(max_entries) + "\n";

  auto clock = std::make_shared<stampede::ManualClock>();
  auto memory_store = std::make_shared<stampede::MemoryStore<std::string>>(max_entries);
  auto lock = std::make_shared<FenceCheckingLock>(std::make_shared<stampede::MemoryTokenLock>(clock));
  stampede::CacheOptions options;
  options.mode = model.swr ? stampede::Mode::stale_while_revalidate : stampede::Mode::blocking;
  options.ttl = kTtl;
  options.soft_ttl = kSoftTtl;
  options.swr_window = kSwrWindow;
  options.lock_ttl = std::chrono::hours(1);  // the watchdog never fires during a run
  options.clock = clock;
  stampede::Cache<std::string> cache(options,
                                     {std::make_shared<CheckingStore>(memory_store), lock, "memory"});
  auto log = std::make_shared<LoadLog>();
  std::uint64_t next_id = 1;

  for (int step = 0; step < kMaxSteps && in.remaining_bytes() > 0; ++step) {
    const int op = in.ConsumeIntegralInRange<int>(0, 5);
    const int k = in.ConsumeIntegralInRange<int>(0, kKeys - 1);
    const std::string key = key_name(k);
    const time_point now = clock->now();
    const std::optional<Live> before = model.latest[k];
    const bool alive = before && now < before->hard;
    const bool fresh = alive && now < before->soft;
    const bool maybe_evicted = memory_store->evictions() > model.evictions_at_write[k];
    const Counts c0 = Counts::of(cache.stats());
    const std::size_t runs0 = log->size();

    switch (op) {
      case 0: {  // get
        trace += "get " + key + " at " + ms_of(now) + " (model: " + describe(before) + ")\n";
        std::optional<std::string> v = cache.get(key);
        cache.wait_idle();
        const Counts c1 = Counts::of(cache.stats());
        if (log->size() != runs0) violation("get ran a loader");
        if (v) {
          if (!alive || *v != value_of(k, before->id)) {
            violation("get(" + key + ") returned " + *v + ", model: " + describe(before));
          }
          const bool counted_fresh = c1.hits == c0.hits + 1;
          const bool counted_stale = c1.stale_hits == c0.stale_hits + 1;
          if (fresh ? !counted_fresh : !counted_stale) {
            violation("get(" + key + ") counted as " + (counted_fresh ? "fresh" : "stale") + ", model says " +
                      (fresh ? "fresh" : "stale"));
          }
        } else {
          if (alive && !maybe_evicted) violation("get(" + key + ") missed a live value: " + describe(before));
          if (c1.misses != c0.misses + 1) violation("get(" + key + ") miss not counted");
          if (alive) model.latest[k].reset();  // it was evicted: it cannot come back
        }
        break;
      }
      case 1:
      case 2: {  // get_or_compute, loader returns (1) or throws (2); it may move the clock first
        const bool throws = op == 2;
        const auto advance = std::chrono::milliseconds(10 * in.ConsumeIntegralInRange<int>(0, 150));
        const std::uint64_t id = next_id++;
        trace += "get_or_compute " + key + " at " + ms_of(now) + " loader id " + std::to_string(id) +
                 (throws ? " throws" : " returns") + " after +" + std::to_string(advance.count()) +
                 "ms (model: " + describe(before) + ")\n";
        auto loader = [log, clock, k, id, throws, advance]() -> std::string {
          clock->advance(advance);
          {
            std::lock_guard l(log->mu);
            log->runs.push_back({k, id, throws, clock->now()});
          }
          if (throws) throw LoadError("load " + std::to_string(id));
          return value_of(k, id);
        };
        std::optional<std::string> v;
        bool threw = false;
        try {
          v = cache.get_or_compute(key, loader);
        } catch (const LoadError& e) {
          threw = true;
          if (std::string(e.what()) != "load " + std::to_string(id))
            violation("rethrew another load's error");
        } catch (const std::exception& e) {
          violation("get_or_compute(" + key + ") threw " + e.what());
        }
        cache.wait_idle();
        const Counts c1 = Counts::of(cache.stats());
        const std::vector<LoadLog::Run> runs = log->since(runs0);
        if (runs.size() > 1)
          violation("get_or_compute(" + key + ") ran " + std::to_string(runs.size()) + " loads");
        if (c1.loads - c0.loads != runs.size()) violation("loads counter differs from loader runs");
        const bool loaded = runs.size() == 1;
        if (loaded && (runs[0].key != k || runs[0].id != id)) violation("a loader of another call ran");
        const bool miss = c1.misses == c0.misses + 1;
        if (miss) {
          // The call saw no live value: allowed only if the model has none, or it may be evicted.
          if (alive && !maybe_evicted)
            violation("get_or_compute(" + key + ") missed a live value: " + describe(before));
          if (!loaded) violation("a miss of " + key + " ran no loader");
          if (throws != threw) violation("the loader's outcome was not passed on");
          if (!threw) {
            if (!v || *v != value_of(k, id))
              violation("a miss of " + key + " returned " + v.value_or("nothing"));
            model.latest[k] = model.written_at(id, runs[0].done);
            model.evictions_at_write[k] = memory_store->evictions();
          } else if (alive) {
            model.latest[k].reset();  // it was evicted (and nothing was stored)
          }
          break;
        }
        // Not a miss: the value the model holds, counted as a fresh or a stale hit.
        if (!alive)
          violation("get_or_compute(" + key + ") served without a miss while the model has " +
                    describe(before) + " at " + ms_of(now));
        if (threw || !v || *v != value_of(k, before->id)) {
          violation("get_or_compute(" + key + ") returned " + v.value_or(threw ? "an exception" : "nothing") +
                    ", model: " + describe(before));
        }
        if (fresh) {
          if (c1.hits != c0.hits + 1) violation("fresh hit not counted");
          if (loaded) violation("a fresh hit of " + key + " ran the loader");
        } else {
          if (c1.stale_hits != c0.stale_hits + 1) violation("stale hit not counted");
          if (!loaded) violation("a stale hit of " + key + " ran no refresh");
          if (!runs[0].threw) {
            model.latest[k] = model.written_at(id, runs[0].done);
            model.evictions_at_write[k] = memory_store->evictions();
          }
        }
        break;
      }
      case 3: {  // put
        const std::uint64_t id = next_id++;
        trace += "put " + key + " id " + std::to_string(id) + " at " + ms_of(now) + "\n";
        try {
          cache.put(key, value_of(k, id));
        } catch (const std::exception& e) {
          violation(std::string("put threw ") + e.what());
        }
        model.latest[k] = model.written_at(id, now);
        model.evictions_at_write[k] = memory_store->evictions();
        break;
      }
      case 4: {  // invalidate
        trace += "invalidate " + key + " at " + ms_of(now) + "\n";
        try {
          cache.invalidate(key);
        } catch (const std::exception& e) {
          violation(std::string("invalidate threw ") + e.what());
        }
        model.latest[k].reset();
        break;
      }
      default: {  // move the clock, forward or back
        const auto d = std::chrono::milliseconds(50 * in.ConsumeIntegralInRange<int>(-40, 60));
        trace += "clock " + std::to_string(d.count()) + "ms\n";
        clock->advance(d);
        break;
      }
    }
  }
  return 0;
}
