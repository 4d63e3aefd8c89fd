// fuzz/cache_combo_fuzzer.cpp: Cache<std::optional<std::string>> with its features combined, against
// a reference model: fail-safe, negative caching, the loader soft timeout on background load
// threads, cancellation, puts and invalidations by this Cache (A) and by another one (B), and a
// near cache that lags behind the shared store.
//
// The input first picks the options: fail-safe on or off (fail_safe_max_age 3 s, throttle 500 ms),
// negative_ttl 0 or 300 ms, loader_soft_timeout 0, 20 ms or 100 ms, background_load_threads 1 or 2,
// and whether A reads through an emulated near cache. Then up to 40 steps on 3 keys:
// - call: A.get_or_compute on a helper thread, with a loader that returns a value, returns
//   std::nullopt or throws, either at once or when the fuzzer releases it ("gated"), optionally
//   with a stop token;
// - release: lets the oldest gated loader of a key finish;
// - stop: requests the stop of the latest waiting call that has a stop token;
// - get (A), put and invalidate (by A or by B), moves of the ManualClock (forward), and delivery
//   of the near cache's pending invalidation messages.
// A and B share one MemoryStore and one MemoryTokenLock ("Redis"); B writes it directly. With the
// near cache on, A's store keeps a local copy of what it read, dropped on A's own writes at once
// and on B's writes only when the fuzzer delivers their invalidation messages (BCAST tracking,
// late): what docs/design.md's near cache promises, no more.
//
// Every value is unique ("k<key>:<id>") and gets a sequence number when its loader starts (a put's
// when the put starts); an invalidate gets one when it starts. Invariants (a violation prints
// the steps and aborts):
// - A value a call or get() returns (a load's, a hit, a fail-safe "last good" value, the old value
//   of a soft timeout) is never older than an invalidate or put that completed before the call
//   began (B's: once its message reached A's near cache, if A has one), nor than a load that
//   returned an empty result (std::nullopt) and completed before the call began (older than it:
//   what started before its call did). An empty result returned is no older than those either.
//   A waiter that joins a load of A in progress may get that load's value although B wrote since
//   the load began (only A's own put and invalidate detach A's loads). Errors: only the loaders'
//   own, and cancelled_error only for a call whose stop was requested.
// - The shared store (what every process reads) never holds a value older than an invalidate or
//   put (A's or B's) that completed: a fail-safe re-arm or a late write never brings one back.
// - Who waits how long, as "the call returns before the step that would unblock the slow loader":
//   a call with an immediate loader on a key with no other call or load in progress returns
//   before the next step (whatever other keys' gated loads hold the background threads); a
//   leader whose gated load found an old value with a soft timeout set, a leader whose stop was
//   requested while its load runs in the background, and a waiter that joined such a load (as
//   long as the load is wanted: the fuzzer reads the load's stop token) return before the next
//   release of a gated loader. The fuzzer waits 10 s of real time for such a call before it
//   reports it, and it does not wait for a call the model cannot promise to return.
// CACHE_COMBO_SKIP=immediate,soft_timeout,value,store (any of them) turns checks off, to look
// past a known defect for others: `immediate` (the first who-waits rule), `soft_timeout` (the
// others), `value` (what calls and get() return), `store` (the shared store); the calls are still
// waited for (shorter), so sequences run alike. CACHE_COMBO_GUARD_MS sets the 10 s guard (e.g. to
// minimise a crash input faster).
// Deterministic apart from when helper threads get there: the fuzzer waits for the states it
// needs (a gated loader entered, a call returned, a load's job destroyed), never sleeps on hope.
//
//   build/fuzz/fuzz/cache_combo_fuzzer fuzz/corpus/cache_combo_fuzzer -max_total_time=60
#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "stampede/cache.hpp"
#include "stampede/clock.hpp"
#include "stampede/errors.hpp"
#include "stampede/memory/backend.hpp"

namespace {

using namespace std::chrono_literals;
using Value = std::optional<std::string>;
using time_point = std::chrono::system_clock::time_point;
using steady = std::chrono::steady_clock;

constexpr int kKeys = 3;
constexpr int kMaxSteps = 40;
constexpr std::size_t kMaxCalls = 12;
constexpr std::chrono::milliseconds kTtl{1000};
// How long the fuzzer waits (real time) for a call the model says must return before it reports
// it: far above anything a healthy call needs, also on a loaded machine.
// CACHE_COMBO_GUARD_MS overrides it (e.g. to minimise a crash input faster).
const std::chrono::milliseconds kGuard{[] {
  const char* env = std::getenv("CACHE_COMBO_GUARD_MS");
  return env != nullptr ? std::atoll(env) : 10'000LL;
}()};

/// @return whether CACHE_COMBO_SKIP names `check`.
bool skipped(std::string_view check) {
  const char* env = std::getenv("CACHE_COMBO_SKIP");
  if (env == nullptr) return false;
  const std::string list = std::string(",") + env + ",";
  return list.find("," + std::string(check) + ",") != std::string::npos;
}

std::string trace;  // the steps of the current input, printed with a violation (main thread only)

[[noreturn]] void violation(const std::string& what) {
  std::fprintf(stderr, "cache_combo_fuzzer: invariant violated: %s\nsteps:\n%s", what.c_str(), trace.c_str());
  std::abort();
}

std::string key_name(int k) { return "k" + std::to_string(k); }
std::string value_of(int k, std::uint64_t id) { return key_name(k) + ":" + std::to_string(id); }
std::string show(const Value& v) { return v ? *v : "nullopt"; }

struct LoadError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

enum class Outcome { value, empty, fail };

/// One loader, shared by its copies (the Cache copies it into a background job). Guarded by
/// World::mu.
struct Gate {
  int key = 0;
  std::uint64_t id = 0;
  Outcome outcome = Outcome::value;
  bool gated = false;
  bool released = false;
  bool entered = false;
  bool finished = false;
  std::uint64_t seq = 0;      // when it started
  std::thread::id caller;     // the thread of the call that made it
  bool inline_load = false;   // it ran on its caller's thread (not handed to a background thread)
  std::stop_token load_stop;  // LoadContext::stop_token() of its load
};

/// One get_or_compute of A. Fields below `thread` are guarded by World::mu.
struct Call {
  std::size_t index = 0;
  int key = 0;
  std::shared_ptr<Gate> gate;  // the only reference besides the loader's copies
  bool has_stop = false;
  std::stop_source stop;
  std::uint64_t floor = 0;      // the model's floor for A when the call began
  std::uint64_t own_floor = 0;  // its part from A's own puts and invalidations (they detach flights)
  std::uint64_t start_seq = 0;  // the newest sequence number when it began
  bool stop_requested = false;
  bool must_return = false;  // the model says it returns before the next release
  bool from_flight = false;  // must_return because it joined a load with an old value
  int flight_of = -1;        // the leader call whose flight it joined (joiners)
  std::string why;
  bool reaped = false;
  bool empty_recorded = false;
  std::thread thread;
  bool returned = false;
  Value result;
  std::string error;  // "" (a value), "load", "cancelled", or what() of anything else
};

/// The state loaders and calls share with the fuzzer's thread.
struct World {
  std::mutex mu;
  std::condition_variable cv;
  std::uint64_t seq = 0;
  std::map<std::uint64_t, std::uint64_t> seq_of_id;
  std::array<std::uint64_t, kKeys> newest_empty{};  // sequence of the newest empty-result load started

  std::uint64_t next_seq(std::uint64_t id) {
    std::lock_guard l(mu);
    seq_of_id[id] = ++seq;
    return seq;
  }
  /// Waits until `pred` (called under mu) holds or `limit` passed. @return pred's last value.
  template <class Pred>
  bool wait(Pred pred, std::chrono::milliseconds limit) {
    const auto deadline = steady::now() + limit;
    std::unique_lock l(mu);
    while (!pred()) {
      if (steady::now() >= deadline) return false;
      cv.wait_for(l, 1ms);
    }
    return true;
  }
};

/// A's store with the near cache on: a local copy of what A read, in front of the shared store.
/// A's own writes drop the key at once; other writers' invalidation messages are queued and
/// delivered only when the fuzzer says so (as Redis's BCAST messages may come late). A read that
/// races with a delivery keeps nothing (the near cache's per-slot sequence). Thread-safe.
class LaggingNearStore final : public stampede::Store<Value> {
 public:
  explicit LaggingNearStore(std::shared_ptr<stampede::Store<Value>> shared) : shared_(std::move(shared)) {}

  std::optional<stampede::Entry<Value>> get(std::string_view key, time_point now) override {
    std::uint64_t ticket = 0;
    {
      std::lock_guard l(mu_);
      auto it = local_.find(std::string(key));
      if (it != local_.end() && now < it->second.hard_expiry) return it->second;
      ticket = sequence_[std::string(key)];
    }
    auto e = shared_->get(key, now);
    std::lock_guard l(mu_);
    if (e && now != time_point::min() && sequence_[std::string(key)] == ticket) local_[std::string(key)] = *e;
    return e;
  }
  stampede::PutResult put(std::string_view key, const stampede::Entry<Value>& entry,
                          time_point now) override {
    const stampede::PutResult r = shared_->put(key, entry, now);
    forget(key);
    return r;
  }
  void invalidate(std::string_view key, std::uint64_t fence) override {
    shared_->invalidate(key, fence);
    forget(key);
  }
  // As RedisStore: the shared store, never the local copy, and nothing kept.
  std::optional<stampede::Entry<Value>> get_authoritative(std::string_view key, time_point now) override {
    return shared_->get(key, now);
  }
  // As RedisStore: judged by the shared store, never by the local copy.
  stampede::PutResult put_if_unchanged(std::string_view key, std::uint64_t expected,
                                       const stampede::Entry<Value>& entry, time_point now) override {
    const stampede::PutResult r = shared_->put_if_unchanged(key, expected, entry, now);
    forget(key);
    return r;
  }

  /// What the near cache would hand a read for the old value (lead()'s read at time_point::min()),
  /// without keeping anything.
  std::optional<stampede::Entry<Value>> peek(std::string_view key) {
    {
      std::lock_guard l(mu_);
      auto it = local_.find(std::string(key));
      if (it != local_.end()) return it->second;
    }
    return shared_->get(key, time_point::min());
  }
  /// Another writer changed `key` (sequence `seq` in the model): its message is on the way.
  void announce(int key, std::uint64_t seq) {
    std::lock_guard l(mu_);
    messages_.emplace_back(key, seq);
  }
  /// Delivers up to `n` pending messages, oldest first. @return them.
  std::vector<std::pair<int, std::uint64_t>> deliver(std::size_t n) {
    std::vector<std::pair<int, std::uint64_t>> out;
    std::lock_guard l(mu_);
    while (n-- > 0 && !messages_.empty()) {
      out.push_back(messages_.front());
      messages_.pop_front();
      local_.erase(key_name(out.back().first));
      ++sequence_[key_name(out.back().first)];
    }
    return out;
  }

 private:
  void forget(std::string_view key) {
    std::lock_guard l(mu_);
    local_.erase(std::string(key));
    ++sequence_[std::string(key)];
  }
  std::shared_ptr<stampede::Store<Value>> shared_;
  std::mutex mu_;
  std::unordered_map<std::string, stampede::Entry<Value>> local_;
  std::unordered_map<std::string, std::uint64_t> sequence_;
  std::deque<std::pair<int, std::uint64_t>> messages_;
};

/// The model: what A must not return older than, per key, and the load each key's callers join.
struct Flight {
  int leader = -1;  // call index; -1: none
  bool has_old = false;
  bool detached = false;  // A put or invalidated the key since it started
  bool stopped = false;   // its leader's stop was requested
};

class Run {
 public:
  explicit Run(FuzzedDataProvider& in) : in_(in) {}

  void go() {
    fail_safe_ = in_.ConsumeBool();
    negative_ttl_ = in_.ConsumeBool() ? 300ms : 0ms;
    const int soft = in_.ConsumeIntegralInRange<int>(0, 2);
    soft_ = soft == 0 ? 0ms : soft == 1 ? 20ms : 100ms;
    threads_ = in_.ConsumeIntegralInRange<std::size_t>(1, 2);
    near_ = in_.ConsumeBool();
    trace += std::string("fail_safe ") + (fail_safe_ ? "3000ms/throttle 500ms" : "off") + ", negative_ttl " +
             std::to_string(negative_ttl_.count()) + "ms, loader_soft_timeout " +
             std::to_string(soft_.count()) + "ms, background_load_threads " + std::to_string(threads_) +
             ", near cache " + (near_ ? "on (lagging)" : "off") + "\n";

    clock_ = std::make_shared<stampede::ManualClock>();
    shared_ = std::make_shared<stampede::MemoryStore<Value>>();
    auto lock = std::make_shared<stampede::MemoryTokenLock>(clock_);
    if (near_) near_store_ = std::make_shared<LaggingNearStore>(shared_);
    stampede::CacheOptions o;
    o.ttl = kTtl;
    o.lock_ttl = 1h;       // never expires during a run
    o.wait_timeout = 30s;  // above the guard: a waiter that is not woken stays blocked
    o.negative_ttl = negative_ttl_;
    o.loader_soft_timeout = soft_;
    o.background_load_threads = threads_;
    o.fail_safe_max_age = fail_safe_ ? 3000ms : 0ms;
    o.fail_safe_throttle = 500ms;
    o.clock = clock_;
    std::shared_ptr<stampede::Store<Value>> a_store = near_store_;
    if (!a_store) a_store = shared_;
    a_.emplace(o, stampede::Backend<Value>{a_store, lock, "memory", clock_});
    b_.emplace(o, stampede::Backend<Value>{shared_, lock, "memory", clock_});

    for (int step = 0; step < kMaxSteps && in_.remaining_bytes() > 0; ++step) {
      reap();
      const int op = in_.ConsumeIntegralInRange<int>(0, 9);
      const int k = in_.ConsumeIntegralInRange<int>(0, kKeys - 1);
      switch (op) {
        case 0:
          get(k);
          break;
        case 1:
        case 2:
        case 3:
          call(k);
          break;
        case 4:
          release(k);
          break;
        case 5:
          stop();
          break;
        case 6:
          write(k, /*put=*/true);
          break;
        case 7:
          write(k, /*put=*/false);
          break;
        case 8: {
          const auto d = std::chrono::milliseconds(100 * in_.ConsumeIntegralInRange<int>(0, 30));
          trace += "clock +" + std::to_string(d.count()) + "ms\n";
          clock_->advance(d);
          break;
        }
        default:
          deliver();
          break;
      }
      reap();
      check_shared_store();
    }
    finish();
  }

  ~Run() {
    // Only reached after finish(): every gate released, every thread joined.
    b_.reset();
    a_.reset();
  }

 private:
  // ---- the model's floors ----
  void raise(std::array<std::uint64_t, kKeys>& floors, int k, std::uint64_t seq) {
    floors[k] = std::max(floors[k], seq);
  }

  // ---- steps ----
  void get(int k) {
    const std::uint64_t floor = a_floor_[k];
    trace += "A.get " + key_name(k) + " (floor " + std::to_string(floor) + ")";
    std::optional<Value> got;
    try {
      got = a_->get(key_name(k));
    } catch (const std::exception& e) {
      violation(std::string("get threw ") + e.what());
    }
    trace += " -> " + (got ? show(*got) : std::string("miss")) + "\n";
    if (got) check_value(k, *got, floor, "A.get(" + key_name(k) + ")");
  }

  void call(int k) {
    const int outcome_n = in_.ConsumeIntegralInRange<int>(0, 2);
    bool gated = in_.ConsumeBool();
    bool has_stop = in_.ConsumeBool();
    if (calls_.size() >= kMaxCalls) return;
    const Outcome outcome = outcome_n == 0 ? Outcome::value : outcome_n == 1 ? Outcome::empty : Outcome::fail;
    const bool quiet = is_quiet(k);
    const bool timeouts = soft_.count() > 0;
    // A gated load needs a free background thread (its job must start, see settle); a caller that
    // joins a load in progress gets an immediate loader (it runs only if it ends up leading).
    if (!quiet || (gated && timeouts && live_gated() >= threads_)) gated = false;
    if (!gated) has_stop = false;

    auto c = std::make_unique<Call>();
    c->index = calls_.size();
    c->key = k;
    c->has_stop = has_stop;
    c->floor = a_floor_[k];
    c->own_floor = own_floor_[k];
    {
      std::lock_guard l(world_.mu);
      c->start_seq = world_.seq;
    }
    if (!quiet) {
      // A waiter may join a load of this Cache that began before B's writes and before empty
      // results completed (only A's own put/invalidate detach it): no older than that load's start.
      std::lock_guard l(world_.mu);
      for (auto& o : calls_) {
        if (o->key == k && !done(*o)) {
          c->floor = std::max(c->own_floor, std::min(c->floor, o->floor));
          break;
        }
      }
    }
    c->gate = std::make_shared<Gate>();
    c->gate->key = k;
    c->gate->id = next_id_++;
    c->gate->outcome = outcome;
    c->gate->gated = gated;
    c->gate->released = !gated;
    std::optional<stampede::Entry<Value>> old;
    if (quiet)
      old = near_store_ ? near_store_->peek(key_name(k)) : shared_->get(key_name(k), time_point::min());
    trace += "call #" + std::to_string(c->index) + " A.get_or_compute " + key_name(k) + " loader id " +
             std::to_string(c->gate->id) +
             (outcome == Outcome::value   ? " returns a value"
              : outcome == Outcome::empty ? " returns nullopt"
                                          : " throws") +
             (gated ? " when released" : " at once") + (has_stop ? ", with a stop token" : "") +
             (quiet ? (old ? ", old value " + show(old->value) : ", nothing old") : ", key busy: joins") +
             " (floor " + std::to_string(c->floor) + ")\n";
    Call& call = *c;
    calls_.push_back(std::move(c));
    const stampede::Stats s0 = a_->stats();  // before it starts: a waiter counts its miss
    start(call);

    if (quiet && !gated && skip_immediate_) {
      // Not checked: waited for as below (shorter), so that the sequence runs as it would.
      (void)world_.wait([&] { return done(call); }, settle_);
    } else if (quiet && !gated) {
      call.must_return = true;
      call.why = "an immediate loader on a key with nothing else in progress";
      expect_returned("the next step");
      world_.wait([&] { return done(call); }, settle_);  // its job is gone (its result, if empty, counts)
    } else if (quiet) {
      // It leads: wait until its loader started or it returned (a hit).
      if (!world_.wait([&] { return call.returned || call.gate->entered; }, kGuard)) {
        violation("call #" + std::to_string(call.index) +
                  " (a gated leader on a quiet key) neither returned " + "nor started its loader within " +
                  std::to_string(kGuard.count()) + " ms");
      }
      // Where its load runs is observed, not predicted: on its own thread (all background threads
      // busy and as many loads queued) a call returns when its loader does.
      const bool background = call.gate->entered && !call.gate->inline_load;
      flights_[k] = Flight{static_cast<int>(call.index), old.has_value() && background, false, false};
      if (timeouts && old && background && !skip_soft_) {
        call.must_return = true;
        call.why = "a leader whose load found an old value, loader_soft_timeout set";
      }
    } else {
      // It joins (or waits for the lock): wait until it got as far as the miss, for a useful
      // interleaving only (nothing is concluded from it).
      (void)world_.wait(
          [&] {
            const auto s = a_->stats();
            return call.returned || s.misses != s0.misses || s.hits != s0.hits;
          },
          settle_);
      Flight& f = flights_[k];
      if (f.leader >= 0 && !done(*calls_[f.leader]) && f.has_old && timeouts && !f.detached && !f.stopped &&
          !skip_soft_) {
        call.must_return = true;
        call.from_flight = true;
        call.flight_of = f.leader;
        call.why = "a waiter of call #" + std::to_string(f.leader) +
                   "'s load, which found an old value, loader_soft_timeout set";
      }
    }
  }

  void release(int k) {
    for (auto& c : calls_) {
      std::unique_lock l(world_.mu);
      if (c->key != k || !c->gate->gated || c->gate->released) continue;
      l.unlock();
      trace += "release the loader of call #" + std::to_string(c->index) + " (" + key_name(k) + ")\n";
      expect_returned("the release of call #" + std::to_string(c->index) + "'s loader");
      l.lock();
      c->gate->released = true;
      world_.cv.notify_all();
      l.unlock();
      // Bounded, and nothing concluded: lets the load and the calls it unblocks finish first.
      Call& released = *c;
      (void)world_.wait(
          [&] {
            if (!done(released)) return false;
            for (auto& o : calls_)
              if (o->key == k && !o->returned) return false;
            return true;
          },
          settle_);
      return;
    }
  }

  void stop() {
    for (auto it = calls_.rbegin(); it != calls_.rend(); ++it) {
      Call& c = **it;
      {
        std::lock_guard l(world_.mu);
        if (!c.has_stop || c.stop_requested || c.returned) continue;
        c.stop_requested = true;
      }
      trace += "stop call #" + std::to_string(c.index) + "\n";
      c.stop.request_stop();  // the stop callbacks run here, on this thread
      std::lock_guard l(world_.mu);
      // Its load runs on a background thread (observed): the caller stops waiting at once.
      if (soft_.count() > 0 && c.gate->entered && !c.gate->inline_load && !skip_soft_) {
        c.must_return = true;
        c.why = "a leader whose stop was requested while its load runs in the background";
      }
      Flight& f = flights_[c.key];
      if (f.leader == static_cast<int>(c.index)) {
        f.stopped = true;
        // Every caller gave up on the load (no waiter had joined it yet): a waiter that had not
        // joined starts a flight of its own, which waits for the lock. Nothing to promise then.
        if (c.gate->load_stop.stop_requested()) {
          trace += "  (its load's stop token is requested: no waiter had joined)\n";
          for (auto& o : calls_)
            if (o->from_flight && o->flight_of == f.leader) o->must_return = false;
        }
      }
      return;
    }
  }

  void write(int k, bool put) {
    const bool by_b = in_.ConsumeBool();
    const std::uint64_t id = next_id_++;
    const std::uint64_t seq = world_.next_seq(id);
    const std::string who = by_b ? "B" : "A";
    trace += who + (put ? ".put " + key_name(k) + " " + value_of(k, id) : ".invalidate " + key_name(k)) +
             " (seq " + std::to_string(seq) + ")\n";
    stampede::Cache<Value>& cache = by_b ? *b_ : *a_;
    try {
      if (put) {
        cache.put(key_name(k), value_of(k, id));
      } else {
        cache.invalidate(key_name(k));
      }
    } catch (const std::exception& e) {
      violation(who + (put ? ".put" : ".invalidate") + " threw " + e.what());
    }
    raise(g_floor_, k, seq);
    if (!by_b) {
      raise(a_floor_, k, seq);
      raise(own_floor_, k, seq);
      // A's flight of the key is detached: a waiter that had not joined it yet leads a new one.
      std::lock_guard l(world_.mu);
      flights_[k].detached = true;
      for (auto& c : calls_)
        if (c->key == k && c->from_flight) c->must_return = false;
    } else if (near_store_) {
      near_store_->announce(k, seq);
    } else {
      raise(a_floor_, k, seq);
    }
  }

  void deliver() {
    const std::size_t n = in_.ConsumeBool() ? 1 : 64;
    if (!near_store_) return;
    for (const auto& [k, seq] : near_store_->deliver(n)) {
      trace += "A's near cache receives the invalidation of " + key_name(k) + " (seq " + std::to_string(seq) +
               ")\n";
      raise(a_floor_, k, seq);
    }
  }

  void finish() {
    trace += "end: release every loader\n";
    for (int k = 0; k < kKeys; ++k) {
      for (std::size_t i = 0; i < calls_.size(); ++i) release(k);
    }
    for (auto& c : calls_) {
      Call& call = *c;
      if (!world_.wait([&] { return call.returned; }, kGuard)) {
        violation("call #" + std::to_string(call.index) + " never returned, every loader released");
      }
      call.thread.join();
    }
    a_->wait_idle();
    (void)world_.wait(
        [&] {
          for (auto& c : calls_)
            if (!done(*c)) return false;
          return true;
        },
        kGuard);
    reap();
    check_shared_store();
  }

  // ---- helpers ----
  void start(Call& call) {
    stampede::Cache<Value>* cache = &*a_;
    World* world = &world_;
    std::shared_ptr<Gate> gate = call.gate;
    call.thread = std::thread([cache, world, gate, &call]() mutable {
      stampede::CallOptions options;
      if (call.has_stop) options.stop = call.stop.get_token();
      {
        std::lock_guard l(world->mu);
        gate->caller = std::this_thread::get_id();
      }
      Value result;
      std::string error;
      {
        auto loader = [gate = std::move(gate), world](stampede::LoadContext& ctx) -> Value {
          std::unique_lock l(world->mu);
          gate->seq = ++world->seq;
          world->seq_of_id[gate->id] = gate->seq;
          if (gate->outcome == Outcome::empty)
            world->newest_empty[gate->key] = std::max(world->newest_empty[gate->key], gate->seq);
          gate->load_stop = ctx.stop_token();
          gate->inline_load = std::this_thread::get_id() == gate->caller;
          gate->entered = true;
          world->cv.notify_all();
          world->cv.wait(l, [&] { return gate->released; });
          gate->finished = true;
          world->cv.notify_all();
          switch (gate->outcome) {
            case Outcome::value:
              return value_of(gate->key, gate->id);
            case Outcome::empty:
              return std::nullopt;
            case Outcome::fail:
              break;
          }
          throw LoadError("load " + std::to_string(gate->id));
        };
        try {
          result = cache->get_or_compute(key_name(call.key), loader, options);
        } catch (const LoadError&) {
          error = "load";
        } catch (const stampede::cancelled_error&) {
          error = "cancelled";
        } catch (const std::exception& e) {
          error = e.what();
          if (error.empty()) error = "?";
        }
      }  // the loader (and its reference to the gate) is gone before the call counts as returned
      std::lock_guard l(world->mu);
      call.result = std::move(result);
      call.error = std::move(error);
      call.returned = true;
      world->cv.notify_all();
    });
  }

  /// Called under world_.mu or from the fuzzer's thread between steps.
  static bool done(const Call& c) { return c.returned && c.gate.use_count() == 1; }

  bool is_quiet(int k) {
    std::lock_guard l(world_.mu);
    for (auto& c : calls_)
      if (c->key == k && !done(*c)) return false;
    return true;
  }
  std::size_t live_gated() {
    std::lock_guard l(world_.mu);
    std::size_t n = 0;
    for (auto& c : calls_)
      if (c->gate->gated && !done(*c)) ++n;
    return n;
  }

  /// Every call the model says must return does so within the guard, before `what`.
  void expect_returned(const std::string& what) {
    for (auto& c : calls_) {
      Call& call = *c;
      bool must = false;
      {
        std::lock_guard l(world_.mu);
        must = call.must_return && !call.returned;
      }
      if (!must) continue;
      if (!world_.wait([&] { return call.returned; }, kGuard)) {
        violation("call #" + std::to_string(call.index) + " (" + key_name(call.key) + ": " + call.why +
                  ") must return before " + what + " but was still blocked after " +
                  std::to_string(kGuard.count()) + " ms");
      }
    }
  }

  void check_value(int k, const Value& v, std::uint64_t floor, const std::string& who) {
    if (skip_value_) return;
    std::lock_guard l(world_.mu);
    if (!v) {
      if (world_.newest_empty[k] < floor) {
        violation(who + " returned nullopt, but no empty-result load of " + key_name(k) +
                  " started after what it must not be older than (floor " + std::to_string(floor) +
                  ", newest empty load " + std::to_string(world_.newest_empty[k]) + ")");
      }
      return;
    }
    const std::string prefix = key_name(k) + ":";
    if (v->rfind(prefix, 0) != 0) violation(who + " returned another key's value " + *v);
    const std::uint64_t id = std::stoull(v->substr(prefix.size()));
    auto it = world_.seq_of_id.find(id);
    if (it == world_.seq_of_id.end()) violation(who + " returned " + *v + ", which no loader or put made");
    if (it->second < floor) {
      violation(who + " returned " + *v + " (seq " + std::to_string(it->second) +
                "), older than an invalidate/put/empty-result load that completed before the call (seq " +
                std::to_string(floor) + ")");
    }
  }

  /// Checks what returned since the last step, and records empty-result loads that completed.
  void reap() {
    for (auto& c : calls_) {
      Call& call = *c;
      bool check = false;
      {
        std::lock_guard l(world_.mu);
        if (call.returned && !call.reaped) {
          call.reaped = true;
          check = true;
        }
      }
      if (check) {
        trace += "  call #" + std::to_string(call.index) + " returned " +
                 (call.error.empty() ? show(call.result) : "error: " + call.error) + "\n";
        const std::string who = "call #" + std::to_string(call.index) + " (" + key_name(call.key) + ")";
        if (call.error.empty()) {
          check_value(call.key, call.result, call.floor, who);
        } else if (call.error == "cancelled") {
          if (!call.stop_requested) violation(who + " threw cancelled_error without a stop request");
        } else if (call.error != "load") {
          violation(who + " threw " + call.error);
        }
      }
      std::lock_guard l(world_.mu);
      if (!call.empty_recorded && done(call) && call.gate->finished && call.gate->outcome == Outcome::empty) {
        // An empty-result load completed: nothing older may come back. Older is what started before
        // its call did (its loader may start after a put that began later than its lock's fence).
        call.empty_recorded = true;
        raise(a_floor_, call.key, call.start_seq + 1);
      }
    }
  }

  void check_shared_store() {
    if (skip_store_) return;
    for (int k = 0; k < kKeys; ++k) {
      auto e = shared_->get(key_name(k), time_point::min());
      if (!e || !e->value) continue;
      const std::string& v = *e->value;
      std::uint64_t seq = 0;
      {
        std::lock_guard l(world_.mu);
        auto it = world_.seq_of_id.find(std::stoull(v.substr(v.find(':') + 1)));
        if (it == world_.seq_of_id.end()) violation("the shared store holds " + v + ", which nobody made");
        seq = it->second;
      }
      if (seq < g_floor_[k]) {
        violation("the shared store holds " + v + " (seq " + std::to_string(seq) + ", fence " +
                  std::to_string(e->fence) + ") although an invalidate/put of " + key_name(k) +
                  " completed after it began (seq " + std::to_string(g_floor_[k]) + ")");
      }
    }
  }

  FuzzedDataProvider& in_;
  const bool skip_immediate_ = skipped("immediate");
  const bool skip_soft_ = skipped("soft_timeout");
  const bool skip_value_ = skipped("value");
  const bool skip_store_ = skipped("store");
  // How long the fuzzer waits for a state only to get a useful interleaving (nothing is concluded
  // if it does not come): shorter when a known defect may leave calls blocked unchecked.
  const std::chrono::milliseconds settle_ = skip_immediate_ ? std::chrono::milliseconds(50) : kGuard;
  bool fail_safe_ = false;
  bool near_ = false;
  std::chrono::milliseconds negative_ttl_{0};
  std::chrono::milliseconds soft_{0};
  std::size_t threads_ = 1;
  std::shared_ptr<stampede::ManualClock> clock_;
  std::shared_ptr<stampede::MemoryStore<Value>> shared_;
  std::shared_ptr<LaggingNearStore> near_store_;
  World world_;
  std::optional<stampede::Cache<Value>> a_;
  std::optional<stampede::Cache<Value>> b_;
  std::vector<std::unique_ptr<Call>> calls_;
  std::array<Flight, kKeys> flights_{};
  std::array<std::uint64_t, kKeys> a_floor_{};    // A must return nothing older
  std::array<std::uint64_t, kKeys> own_floor_{};  // A's own puts and invalidations
  std::array<std::uint64_t, kKeys> g_floor_{};    // the shared store must hold nothing older
  std::uint64_t next_id_ = 1;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  trace.clear();
  Run run(in);
  run.go();
  return 0;
}
