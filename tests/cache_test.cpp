// Cache<T> behaviours specific to the in-process backend or to construction: option validation,
// capacity, stats/event plumbing, backend failures. The backend-agnostic behaviours are in
// cache_conformance.hpp (run by memory_conformance_test).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <functional>
#include <future>
#include <latch>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "stampede/stampede.hpp"
#include "support/test_support.hpp"

namespace {

using namespace std::chrono_literals;
using stampede::Cache;
using stampede::CacheOptions;

// ---- option validation ----------------------------------------------------------------------------

struct BadOption {
  std::string field;
  std::function<void(CacheOptions&)> spoil;
};

class BadOptions : public ::testing::TestWithParam<BadOption> {};

TEST_P(BadOptions, ThrowInvalidArgumentNamingTheField) {
  CacheOptions o;
  GetParam().spoil(o);
  try {
    Cache<int> cache(o);
    FAIL() << "accepted a bad " << GetParam().field;
  } catch (const std::invalid_argument& e) {
    EXPECT_TRUE(stampede_test::mentions_word(e.what(), GetParam().field))
        << "message does not name " << GetParam().field << ": " << e.what();
  }
  // The same check is available without building a Cache.
  EXPECT_THROW(stampede::validate(o), std::invalid_argument);
}

const double kNaN = std::numeric_limits<double>::quiet_NaN();

INSTANTIATE_TEST_SUITE_P(
    EachField, BadOptions,
    ::testing::Values(BadOption{"ttl", [](CacheOptions& o) { o.ttl = 0ms; }},
                      BadOption{"ttl", [](CacheOptions& o) { o.ttl = -1ms; }},
                      BadOption{"soft_ttl", [](CacheOptions& o) { o.soft_ttl = 0ms; }},
                      BadOption{"swr_window", [](CacheOptions& o) { o.swr_window = -1ms; }},
                      BadOption{"lock_ttl", [](CacheOptions& o) { o.lock_ttl = 0ms; }},
                      BadOption{"wait_timeout", [](CacheOptions& o) { o.wait_timeout = 0ms; }},
                      BadOption{"wait_timeout", [](CacheOptions& o) { o.wait_timeout = -5ms; }},
                      BadOption{"poll_interval", [](CacheOptions& o) { o.poll_interval = 0ms; }},
                      BadOption{"ttl_jitter", [](CacheOptions& o) { o.ttl_jitter = -0.1; }},
                      BadOption{"ttl_jitter", [](CacheOptions& o) { o.ttl_jitter = 1.5; }},
                      BadOption{"ttl_jitter", [](CacheOptions& o) { o.ttl_jitter = kNaN; }},
                      BadOption{"early_refresh_beta", [](CacheOptions& o) { o.early_refresh_beta = -1; }},
                      BadOption{"early_refresh_beta", [](CacheOptions& o) { o.early_refresh_beta = kNaN; }},
                      BadOption{"refresh_threads", [](CacheOptions& o) { o.refresh_threads = 0; }},
                      BadOption{"refresh_queue", [](CacheOptions& o) { o.refresh_queue = 0; }}),
    [](const ::testing::TestParamInfo<BadOption>& param) {
      return param.param.field + "_" + std::to_string(param.index);
    });

TEST(CacheOptionsTest, BoundaryValuesAreAccepted) {
  CacheOptions o;
  o.swr_window = 0ms;
  o.ttl_jitter = 1.0;
  o.early_refresh_beta = 0.0;
  o.ttl = o.soft_ttl = o.lock_ttl = o.wait_timeout = o.poll_interval = 1ms;
  EXPECT_NO_THROW(stampede::validate(o));
  EXPECT_NO_THROW(Cache<int>{o});
  EXPECT_NO_THROW(Cache<int>{CacheOptions{}});
}

TEST(CacheTest, BackendWithoutStoreOrLockIsRejected) {
  auto full = stampede::memory_backend<int>();
  EXPECT_THROW((Cache<int>(CacheOptions{}, {nullptr, full.lock, "half"})), std::invalid_argument);
  EXPECT_THROW((Cache<int>(CacheOptions{}, {full.store, nullptr, "half"})), std::invalid_argument);
  Cache<int> defaulted(CacheOptions{}, stampede::Backend<int>{});  // neither: the memory backend
  EXPECT_EQ(defaulted.backend_name(), "memory");
  EXPECT_EQ(defaulted.get_or_compute("k", [] { return 1; }), 1);
}

TEST(CacheTest, DefaultCacheIsInProcess) {
  Cache<int> cache;
  EXPECT_EQ(cache.backend_name(), "memory");
  int loads = 0;
  EXPECT_EQ(cache.get_or_compute("k", [&] { return ++loads; }), 1);
  EXPECT_EQ(cache.get_or_compute("k", [&] { return ++loads; }), 1);
  EXPECT_EQ(loads, 1);
}

// ---- capacity -----------------------------------------------------------------------------------

TEST(CacheTest, MaxEntriesBoundsTheStoreAndCountsEvictions) {
  constexpr std::size_t kCap = 10;
  auto clock = std::make_shared<stampede::ManualClock>();
  stampede::Backend<int> backend = stampede::memory_backend<int>(kCap, clock);
  auto* store = dynamic_cast<stampede::MemoryStore<int>*>(backend.store.get());
  ASSERT_NE(store, nullptr);
  Cache<int> cache({.clock = clock}, backend);
  for (int i = 0; i < 100; ++i) {
    ASSERT_EQ(cache.get_or_compute("k" + std::to_string(i), [i] { return i; }), i);
    EXPECT_LE(store->size(), kCap) << "after " << i + 1 << " inserts";
  }
  EXPECT_EQ(store->size(), kCap);
  EXPECT_EQ(cache.stats().evictions, 90u);
  EXPECT_EQ(cache.get("k99"), 99) << "the entry just written was evicted";
}

TEST(CacheTest, MaxEntriesOptionBoundsTheDefaultBackend) {
  Cache<int> cache({.max_entries = 5});
  for (int i = 0; i < 50; ++i) ASSERT_EQ(cache.get_or_compute("k" + std::to_string(i), [i] { return i; }), i);
  EXPECT_EQ(cache.stats().evictions, 45u);
  int present = 0;
  for (int i = 0; i < 50; ++i) present += cache.get("k" + std::to_string(i)).has_value() ? 1 : 0;
  EXPECT_EQ(present, 5);
}

TEST(CacheTest, EvictionNeverRemovesTheEntryBeingInserted) {
  auto clock = std::make_shared<stampede::ManualClock>();
  const auto now = clock->now();
  for (std::size_t cap : {1u, 2u, 3u}) {
    stampede::MemoryStore<int> store(cap);
    for (int i = 0; i < 40; ++i) {
      const std::string key = "k" + std::to_string(i);
      // Newer entries die sooner, so an "earliest expiry" victim would be the new one if it were
      // not protected.
      const auto ttl = std::chrono::hours(100 - i);
      ASSERT_EQ(
          store.put(key, {.value = i, .soft_expiry = now + ttl, .hard_expiry = now + ttl, .fence = 1}, now),
          stampede::PutResult::stored);
      EXPECT_TRUE(store.get(key, now)) << "cap " << cap << ": " << key << " evicted on insert";
      EXPECT_LE(store.size(), cap);
    }
    EXPECT_EQ(store.evictions(), 40u - cap);
  }
}

// ---- stats, events ------------------------------------------------------------------------------

TEST(StatsTest, ToJsonHasEveryCounter) {
  stampede::Stats s;
  std::uint64_t n = 1;
  for (std::uint64_t* field :
       {&s.hits, &s.misses, &s.stale_hits, &s.loads, &s.load_failures, &s.coalesced, &s.lock_acquired,
        &s.lock_contended, &s.wait_timeouts, &s.fallback_computes, &s.refreshes, &s.refresh_failures,
        &s.refreshes_dropped, &s.stale_writes_rejected, &s.backend_errors, &s.decode_errors, &s.evictions}) {
    *field = n++;
  }
  s.load_time = std::chrono::nanoseconds(n);
  const nlohmann::json j = s.to_json();
  const std::vector<std::pair<std::string, std::uint64_t>> expected = {{"hits", 1},
                                                                       {"misses", 2},
                                                                       {"stale_hits", 3},
                                                                       {"loads", 4},
                                                                       {"load_failures", 5},
                                                                       {"coalesced", 6},
                                                                       {"lock_acquired", 7},
                                                                       {"lock_contended", 8},
                                                                       {"wait_timeouts", 9},
                                                                       {"fallback_computes", 10},
                                                                       {"refreshes", 11},
                                                                       {"refresh_failures", 12},
                                                                       {"refreshes_dropped", 13},
                                                                       {"stale_writes_rejected", 14},
                                                                       {"backend_errors", 15},
                                                                       {"decode_errors", 16},
                                                                       {"evictions", 17},
                                                                       {"load_time_ns", 18}};
  EXPECT_EQ(j.size(), expected.size()) << j.dump();
  for (const auto& [key, value] : expected) {
    ASSERT_TRUE(j.contains(key)) << key;
    EXPECT_EQ(j[key].get<std::uint64_t>(), value) << key;
  }
}

TEST(EventsTest, EveryEventTypeHasADistinctName) {
  using E = stampede::EventType;
  std::set<std::string_view> names;
  for (E e :
       {E::lock_acquired, E::lock_timeout, E::lock_lost, E::load_done, E::load_failed, E::refresh_done,
        E::refresh_failed, E::refresh_dropped, E::stale_write_rejected, E::decode_failed, E::backend_error}) {
    const std::string_view name = stampede::to_string(e);
    EXPECT_NE(name, "unknown");
    names.insert(name);
  }
  EXPECT_EQ(names.size(), 11u);
  EXPECT_EQ(stampede::to_string(E::lock_acquired), "lock_acquired");
}

TEST(CacheTest, SwrGetServesStaleWithoutScheduling) {
  auto clock = std::make_shared<stampede::ManualClock>();
  Cache<int> cache(
      {.mode = stampede::Mode::stale_while_revalidate, .soft_ttl = 10s, .swr_window = 10s, .clock = clock});
  ASSERT_EQ(cache.get_or_compute("k", [] { return 1; }), 1);
  clock->advance(15s);
  EXPECT_EQ(cache.get("k"), 1);
  cache.wait_idle();
  EXPECT_EQ(cache.stats().stale_hits, 1u);
  EXPECT_EQ(cache.stats().loads, 1u);
  EXPECT_EQ(cache.stats().refreshes, 0u);
}

TEST(CacheTest, SwrZeroWindowNeverServesStale) {
  auto clock = std::make_shared<stampede::ManualClock>();
  Cache<int> cache(
      {.mode = stampede::Mode::stale_while_revalidate, .soft_ttl = 10s, .swr_window = 0s, .clock = clock});
  ASSERT_EQ(cache.get_or_compute("k", [] { return 1; }), 1);
  clock->advance(10s);
  EXPECT_EQ(cache.get("k"), std::nullopt);
  EXPECT_EQ(cache.get_or_compute("k", [] { return 2; }), 2);
  EXPECT_EQ(cache.stats().stale_hits, 0u);
}

TEST(CacheTest, FlightFollowerTimesOutAndFollowsThePolicy) {
  // The in-process follower's wait is bounded by wait_timeout too (not only the lock wait).
  Cache<int> cache({.wait_timeout = 50ms, .on_wait_timeout = stampede::OnWaitTimeout::throw_error});
  stampede_test::Gate release_load;
  std::latch loading(1);
  auto leader = std::async(std::launch::async, [&] {
    return cache.get_or_compute("k", [&] {
      loading.count_down();
      release_load.wait();
      return 1;
    });
  });
  stampede_test::OpenOnExit open_on_exit(release_load);
  loading.wait();
  EXPECT_THROW((void)cache.get_or_compute("k", [] { return -1; }), stampede::timeout_error);
  EXPECT_EQ(cache.stats().wait_timeouts, 1u);
  release_load.open();
  EXPECT_EQ(leader.get(), 1);
  EXPECT_EQ(cache.get("k"), 1);
}

TEST(CacheTest, LoaderResultIsConvertedToT) {
  Cache<std::string> cache;
  EXPECT_EQ(cache.get_or_compute("k", [] { return "text"; }), "text");
  EXPECT_EQ(cache.get("k"), "text");
}

// ---- backend failures ---------------------------------------------------------------------------

/// A TokenLock whose every call fails like an unreachable server.
class DownLock final : public stampede::TokenLock {
 public:
  std::optional<stampede::LockToken> try_acquire(std::string_view, std::chrono::milliseconds) override {
    fail();
  }
  bool release(std::string_view, std::string_view) override { fail(); }
  bool renew(std::string_view, std::string_view, std::chrono::milliseconds) override { fail(); }
  std::uint64_t bump_fence(std::string_view) override { fail(); }
  std::unique_ptr<stampede::Subscription> subscribe(std::string_view) override { fail(); }
  void notify(std::string_view) override { fail(); }

 private:
  [[noreturn]] static void fail() { throw stampede::backend_error("connection refused"); }
};

TEST(CacheTest, FailOpenLoadsWhenTheLockBackendIsDown) {
  std::atomic<int> backend_events{0};
  CacheOptions o;
  o.on_event = [&](const stampede::Event& e) {
    if (e.type == stampede::EventType::backend_error) backend_events.fetch_add(1);
  };
  Cache<int> cache(o, {std::make_shared<stampede::MemoryStore<int>>(), std::make_shared<DownLock>(), "down"});
  int loads = 0;
  EXPECT_EQ(cache.get_or_compute("k", [&] { return ++loads; }), 1);
  EXPECT_EQ(loads, 1);
  EXPECT_GE(cache.stats().backend_errors, 1u);
  EXPECT_GE(backend_events.load(), 1);
}

TEST(CacheTest, FailClosedThrowsBackendError) {
  CacheOptions o;
  o.backend_failure = stampede::BackendFailure::fail_closed;
  Cache<int> cache(o, {std::make_shared<stampede::MemoryStore<int>>(), std::make_shared<DownLock>(), "down"});
  int loads = 0;
  EXPECT_THROW((void)cache.get_or_compute("k", [&] { return ++loads; }), stampede::backend_error);
  EXPECT_EQ(loads, 0);
  EXPECT_EQ(cache.stats().backend_errors, 1u);
  // put/invalidate report a write that did not happen in both modes.
  EXPECT_THROW(cache.put("k", 1), stampede::backend_error);
  EXPECT_THROW(cache.invalidate("k"), stampede::backend_error);
}

/// A Store whose stored bytes cannot be decoded: every get throws codec_error.
class GarbageStore final : public stampede::Store<int> {
 public:
  std::optional<stampede::Entry<int>> get(std::string_view, std::chrono::system_clock::time_point) override {
    throw stampede::codec_error("not JSON");
  }
  stampede::PutResult put(std::string_view, const stampede::Entry<int>&,
                          std::chrono::system_clock::time_point) override {
    puts.fetch_add(1);
    return stampede::PutResult::stored;
  }
  void invalidate(std::string_view, std::uint64_t) override {}
  std::atomic<int> puts{0};
};

TEST(CacheTest, UndecodableValueIsAMissAndIsReplaced) {
  auto store = std::make_shared<GarbageStore>();
  Cache<int> cache(CacheOptions{}, {store, std::make_shared<stampede::MemoryTokenLock>(), "garbage"});
  EXPECT_EQ(cache.get_or_compute("k", [] { return 4; }), 4);
  EXPECT_GE(cache.stats().decode_errors, 1u);
  EXPECT_EQ(store->puts.load(), 1);
  EXPECT_EQ(cache.get("k"), std::nullopt);
}

}  // namespace
