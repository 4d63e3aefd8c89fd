// Cache<T> behaviours specific to the in-process backend or to construction: option validation,
// capacity, stats/event plumbing, backend failures. The backend-agnostic behaviours are in
// the conformance/cache_*.hpp suites (run by memory_conformance_test).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <functional>
#include <future>
#include <latch>
#include <limits>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "stampede/detail/sanitizers.hpp"  // STAMPEDE_TSAN
#include "stampede/json.hpp"
#include "stampede/stampede.hpp"
#include "support/instances.hpp"  // Cache<int>, Cache<std::string>, ...: compiled once
#include "support/put_hook_store.hpp"
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
    ::testing::Values(
        BadOption{"ttl", [](CacheOptions& o) { o.ttl = 0ms; }},
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
        BadOption{"refresh_queue", [](CacheOptions& o) { o.refresh_queue = 0; }},
        // Lifetimes past kMaxLifetime would overflow an entry's expiry or a lease.
        BadOption{"ttl", [](CacheOptions& o) { o.ttl = std::chrono::milliseconds::max(); }},
        BadOption{"soft_ttl", [](CacheOptions& o) { o.soft_ttl = std::chrono::milliseconds::max(); }},
        BadOption{"swr_window", [](CacheOptions& o) { o.swr_window = stampede::kMaxLifetime + 1ms; }},
        BadOption{"lock_ttl", [](CacheOptions& o) { o.lock_ttl = std::chrono::milliseconds::max(); }},
        BadOption{"poll_interval",
                  [](CacheOptions& o) { o.poll_interval = std::chrono::milliseconds::max(); }},
        BadOption{"negative_ttl", [](CacheOptions& o) { o.negative_ttl = std::chrono::milliseconds::max(); }},
        BadOption{"fail_safe_max_age",
                  [](CacheOptions& o) { o.fail_safe_max_age = std::chrono::milliseconds::max(); }},
        BadOption{"fail_safe_throttle",
                  [](CacheOptions& o) { o.fail_safe_throttle = std::chrono::milliseconds::max(); }}),
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

TEST(CacheOptionsTest, LifetimesUpToTheMaximumAreAcceptedAndStoreEntries) {
  CacheOptions o;
  o.ttl = o.soft_ttl = o.swr_window = o.lock_ttl = o.fail_safe_max_age = o.fail_safe_throttle =
      stampede::kMaxLifetime;
  o.mode = stampede::Mode::stale_while_revalidate;
  Cache<int> cache(o);
  EXPECT_EQ(cache.get_or_compute("k", [] { return 1; }), 1);
  EXPECT_EQ(cache.get("k"), 1) << "an entry with the longest lifetimes was not stored, or expired at once";
  stampede::LoadContext context;
  EXPECT_NO_THROW(context.set_ttl(stampede::kMaxLifetime));
  EXPECT_THROW(context.set_ttl(std::chrono::milliseconds::max()), std::invalid_argument);
}

// A wait of milliseconds::max() means "as long as it takes": now + max must not overflow into a
// deadline in the past (every waiter threw timeout_error at once, "waited 9223372036854775807 ms").
TEST(CacheOptionsTest, TheLongestWaitTimeoutWaitsForTheLoadInsteadOfFailingAtOnce) {
  for (bool per_call : {false, true}) {
    CacheOptions o;
    if (!per_call) o.wait_timeout = std::chrono::milliseconds::max();
    o.loader_hard_timeout = std::chrono::milliseconds::max();  // a deadline of its own, saturated too
    Cache<int> cache(o);
    const stampede::CallOptions call{.wait_timeout = per_call ? std::chrono::milliseconds::max() : 0ms};
    stampede_test::Gate loading;
    stampede_test::Gate release;
    auto leader = std::async(std::launch::async, [&] {
      return cache.get_or_compute("k", [&] {
        loading.open();
        EXPECT_TRUE(release.wait_for());
        return 7;
      });
    });
    ASSERT_TRUE(loading.wait_for());
    auto waiter = std::async(std::launch::async, [&] {
      return cache.get_or_compute(
          "k", [] { return -1; }, call);
    });
    ASSERT_TRUE(stampede_test::eventually([&] { return cache.stats().misses == 2; }));  // it has joined
    release.open();
    EXPECT_EQ(waiter.get(), 7) << (per_call ? "CallOptions" : "CacheOptions");
    EXPECT_EQ(leader.get(), 7);
    EXPECT_EQ(cache.stats().wait_timeouts, 0u);
  }
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

// The core knows no backend type: a store it cannot name (here a decorator around the embedded
// store, forwarding add_counters) still reports its evictions in stats().
TEST(CacheTest, StatsReportTheCountersOfAStoreTheCoreDoesNotKnow) {
  constexpr std::size_t kCap = 10;
  auto clock = std::make_shared<stampede::ManualClock>();
  stampede::Backend<int> memory = stampede::memory_backend<int>(kCap, clock);
  auto hooked = std::make_shared<stampede_test::HookedStore<int>>(memory.store);
  Cache<int> cache({.clock = clock}, {hooked, memory.lock, "hooked"});
  for (int i = 0; i < 30; ++i) ASSERT_EQ(cache.get_or_compute("k" + std::to_string(i), [i] { return i; }), i);
  EXPECT_EQ(cache.stats().evictions, 20u) << "the wrapped store's evictions were not reported";
}

/// A store of no known kind that holds nothing and keeps no counters.
class SilentStore : public stampede::Store<int> {
 public:
  std::optional<stampede::Entry<int>> get(std::string_view, std::chrono::system_clock::time_point) override {
    return std::nullopt;
  }
  stampede::PutResult put(std::string_view, const stampede::Entry<int>&,
                          std::chrono::system_clock::time_point) override {
    return stampede::PutResult::stored;
  }
  void invalidate(std::string_view, std::uint64_t) override {}
};

/// A SilentStore that reports 7 evictions of its own.
class CountingStore final : public SilentStore {
 public:
  void add_counters(stampede::BackendCounters& counters) const override { counters.evictions += 7; }
};

TEST(CacheTest, StatsAddWhatTheStoreReportsAndAStoreThatReportsNothingLeavesZero) {
  stampede::Backend<int> memory = stampede::memory_backend<int>();
  Cache<int> counting({}, {std::make_shared<CountingStore>(), memory.lock, "counting"});
  EXPECT_EQ(counting.stats().evictions, 7u);
  Cache<int> silent({}, {std::make_shared<SilentStore>(), memory.lock, "silent"});
  EXPECT_EQ(silent.stats().evictions, 0u);
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
#define SET_FIELD(name, kind, help) s.name = stampede::detail::stat_##kind(n++);
  STAMPEDE_COUNTERS(SET_FIELD)
#undef SET_FIELD
  const nlohmann::json j = stampede::to_json(s);
  std::size_t fields = 0;
  n = 1;
#define CHECK_FIELD(name, kind, help)                                                        \
  {                                                                                          \
    ++fields;                                                                                \
    const bool ns = std::is_same_v<stampede::detail::stat_##kind, std::chrono::nanoseconds>; \
    const std::string key = std::string(#name) + (ns ? "_ns" : "");                          \
    ASSERT_TRUE(j.contains(key)) << key;                                                     \
    EXPECT_EQ(j[key].get<std::uint64_t>(), n++) << key;                                      \
  }
  STAMPEDE_COUNTERS(CHECK_FIELD)
#undef CHECK_FIELD
  EXPECT_EQ(j.size(), fields) << j.dump();
  EXPECT_EQ(j["hits"], 1u);
  EXPECT_EQ(j["load_time_ns"], 6u);
  EXPECT_EQ(j["evictions"], fields);
  const nlohmann::json found_by_nlohmann = s;
  EXPECT_EQ(found_by_nlohmann, j);
}

TEST(StatsTest, PrometheusTextOfASmallStats) {
  stampede::Stats s;
  s.hits = 10;
  s.misses = 2;
  s.loads = 2;
  s.load_time = 1500ms;
  s.evictions = 3;
  EXPECT_EQ(
      stampede::to_prometheus(s, "shop_cache"),
      "# HELP shop_cache_hits_total Fresh values returned from the store.\n"
      "# TYPE shop_cache_hits_total counter\n"
      "shop_cache_hits_total 10\n"
      "# HELP shop_cache_misses_total Calls that found no servable value.\n"
      "# TYPE shop_cache_misses_total counter\n"
      "shop_cache_misses_total 2\n"
      "# HELP shop_cache_stale_hits_total Stale values returned at once (stale-while-revalidate).\n"
      "# TYPE shop_cache_stale_hits_total counter\n"
      "shop_cache_stale_hits_total 0\n"
      "# HELP shop_cache_loads_total Loader runs (foreground, fallback and refresh).\n"
      "# TYPE shop_cache_loads_total counter\n"
      "shop_cache_loads_total 2\n"
      "# HELP shop_cache_load_failures_total Loader runs that threw.\n"
      "# TYPE shop_cache_load_failures_total counter\n"
      "shop_cache_load_failures_total 0\n"
      "# HELP shop_cache_load_time_seconds_total Time spent in loaders.\n"
      "# TYPE shop_cache_load_time_seconds_total counter\n"
      "shop_cache_load_time_seconds_total 1.5\n"
      "# HELP shop_cache_coalesced_total Callers served by another caller's load.\n"
      "# TYPE shop_cache_coalesced_total counter\n"
      "shop_cache_coalesced_total 0\n"
      "# HELP shop_cache_lock_acquired_total Token locks taken.\n"
      "# TYPE shop_cache_lock_acquired_total counter\n"
      "shop_cache_lock_acquired_total 0\n"
      "# HELP shop_cache_lock_contended_total Token lock attempts that found the lock held.\n"
      "# TYPE shop_cache_lock_contended_total counter\n"
      "shop_cache_lock_contended_total 0\n"
      "# HELP shop_cache_wait_timeouts_total Waits for another caller's load that reached wait_timeout.\n"
      "# TYPE shop_cache_wait_timeouts_total counter\n"
      "shop_cache_wait_timeouts_total 0\n"
      "# HELP shop_cache_fallback_computes_total Loads run after a wait timeout (OnWaitTimeout::compute).\n"
      "# TYPE shop_cache_fallback_computes_total counter\n"
      "shop_cache_fallback_computes_total 0\n"
      "# HELP shop_cache_refreshes_total Background refreshes that stored a value.\n"
      "# TYPE shop_cache_refreshes_total counter\n"
      "shop_cache_refreshes_total 0\n"
      "# HELP shop_cache_refresh_failures_total Background refreshes whose loader (or its copy) threw.\n"
      "# TYPE shop_cache_refresh_failures_total counter\n"
      "shop_cache_refresh_failures_total 0\n"
      "# HELP shop_cache_refreshes_dropped_total Refreshes not queued because the queue was full.\n"
      "# TYPE shop_cache_refreshes_dropped_total counter\n"
      "shop_cache_refreshes_dropped_total 0\n"
      "# HELP shop_cache_stale_writes_rejected_total Stores refused because a newer fence exists.\n"
      "# TYPE shop_cache_stale_writes_rejected_total counter\n"
      "shop_cache_stale_writes_rejected_total 0\n"
      "# HELP shop_cache_backend_errors_total Backend failures (fail_open went on without the backend).\n"
      "# TYPE shop_cache_backend_errors_total counter\n"
      "shop_cache_backend_errors_total 0\n"
      "# HELP shop_cache_store_failures_total Loaded values that could not be stored (encode or backend "
      "error).\n"
      "# TYPE shop_cache_store_failures_total counter\n"
      "shop_cache_store_failures_total 0\n"
      "# HELP shop_cache_decode_errors_total Stored values that could not be decoded (treated as misses).\n"
      "# TYPE shop_cache_decode_errors_total counter\n"
      "shop_cache_decode_errors_total 0\n"
      "# HELP shop_cache_cancelled_total Waits ended by the caller's stop token (cancelled_error).\n"
      "# TYPE shop_cache_cancelled_total counter\n"
      "shop_cache_cancelled_total 0\n"
      "# HELP shop_cache_soft_timeouts_total Loads that outran loader_soft_timeout (their callers got the "
      "old "
      "value).\n"
      "# TYPE shop_cache_soft_timeouts_total counter\n"
      "shop_cache_soft_timeouts_total 0\n"
      "# HELP shop_cache_hard_timeouts_total Loads that outran loader_hard_timeout with nothing old to "
      "serve.\n"
      "# TYPE shop_cache_hard_timeouts_total counter\n"
      "shop_cache_hard_timeouts_total 0\n"
      "# HELP shop_cache_stale_served_total Callers handed an old value because their load outran its "
      "timeout.\n"
      "# TYPE shop_cache_stale_served_total counter\n"
      "shop_cache_stale_served_total 0\n"
      "# HELP shop_cache_background_loads_total Loads run on a background load thread (a loader timeout is "
      "set).\n"
      "# TYPE shop_cache_background_loads_total counter\n"
      "shop_cache_background_loads_total 0\n"
      "# HELP shop_cache_fail_safe_served_total Failed loads answered with the last good value (fail-safe), "
      "re-armed.\n"
      "# TYPE shop_cache_fail_safe_served_total counter\n"
      "shop_cache_fail_safe_served_total 0\n"
      "# HELP shop_cache_near_hits_total Reads answered by the Redis backend's near cache (no round trip).\n"
      "# TYPE shop_cache_near_hits_total counter\n"
      "shop_cache_near_hits_total 0\n"
      "# HELP shop_cache_near_misses_total Reads the near cache could not answer (went to Redis).\n"
      "# TYPE shop_cache_near_misses_total counter\n"
      "shop_cache_near_misses_total 0\n"
      "# HELP shop_cache_near_invalidations_total Keys the near cache was told by Redis were written.\n"
      "# TYPE shop_cache_near_invalidations_total counter\n"
      "shop_cache_near_invalidations_total 0\n"
      "# HELP shop_cache_near_flushes_total Times the whole near cache was dropped (tracking lost, server "
      "flush).\n"
      "# TYPE shop_cache_near_flushes_total counter\n"
      "shop_cache_near_flushes_total 0\n"
      "# HELP shop_cache_evictions_total Entries the in-process store evicted for max_entries.\n"
      "# TYPE shop_cache_evictions_total counter\n"
      "shop_cache_evictions_total 3\n");
}

TEST(StatsTest, PrometheusPrefixIsAMetricNameOrNothing) {
  stampede::Stats s;
  s.hits = 4;
  EXPECT_NE(stampede::to_prometheus(s).find("\nstampede_hits_total 4\n"), std::string::npos);
  EXPECT_EQ(stampede::to_prometheus(s, "").rfind("# HELP hits_total ", 0), 0u);
  EXPECT_NO_THROW((void)stampede::to_prometheus(s, "app:cache_1"));
  for (const char* bad : {"1app", "my-app", "my app", "caf\xc3\xa9"}) {
    EXPECT_THROW((void)stampede::to_prometheus(s, bad), std::invalid_argument) << bad;
  }
}

// ---- codecs -------------------------------------------------------------------------------------

struct JsonItem {
  int id = 0;
  std::string name;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(JsonItem, id, name)
struct NotJson {
  int id = 0;
};

TEST(CodecTest, TheCodecConceptHoldsOnlyForTypesTheCodecCanWrite) {
  static_assert(stampede::Codec<stampede::StringCodec, std::string>);
  static_assert(!stampede::Codec<stampede::StringCodec, int>);
  static_assert(stampede::Codec<stampede::JsonCodec<JsonItem>, JsonItem>);
  static_assert(stampede::Codec<stampede::JsonCodec<int>, int>);
  static_assert(!stampede::Codec<stampede::JsonCodec<NotJson>, NotJson>,
                "JsonCodec of a type JSON cannot write");
  const std::string bytes = stampede::JsonCodec<JsonItem>::encode({7, "pear"});
  EXPECT_EQ(bytes, R"({"id":7,"name":"pear"})");
  EXPECT_EQ(stampede::JsonCodec<JsonItem>::decode(bytes).name, "pear");
  EXPECT_THROW((void)stampede::JsonCodec<JsonItem>::decode("{"), stampede::codec_error);
}

TEST(EventsTest, EveryEventTypeHasItsOwnNameAsItsName) {
  std::set<std::string_view> names;
#define CHECK_EVENT_NAME(name, what)                                \
  EXPECT_EQ(stampede::to_string(stampede::EventType::name), #name); \
  names.insert(stampede::to_string(stampede::EventType::name));
  STAMPEDE_EVENT_TYPES(CHECK_EVENT_NAME)
#undef CHECK_EVENT_NAME
  EXPECT_EQ(names.size(), 15u);
  EXPECT_EQ(stampede::to_string(stampede::EventType::lock_acquired), "lock_acquired");
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

// ---- visit: reading a value in place -----------------------------------------------------------

/// A value that counts the copies made of it (all threads).
struct Counted {
  static inline std::atomic<int> copies{0};
  int v = 0;
  explicit Counted(int value) : v(value) {}
  Counted(const Counted& o) : v(o.v) { copies.fetch_add(1); }
  Counted(Counted&&) noexcept = default;
  Counted& operator=(const Counted& o) {
    v = o.v;
    copies.fetch_add(1);
    return *this;
  }
  Counted& operator=(Counted&&) noexcept = default;
  ~Counted() = default;
};

TEST(CacheVisit, AHitOfTheEmbeddedBackendCopiesNothing) {
  Cache<Counted> cache;
  cache.put("k", Counted(7));
  auto loader = [] { return Counted(-1); };
  Counted::copies = 0;
  EXPECT_EQ(cache.visit("k", loader, [](const Counted& c) { return c.v; }), 7);
  EXPECT_EQ(Counted::copies.load(), 0) << "visit copied the value on a hit";
  EXPECT_EQ(cache.get_or_compute("k", loader).v, 7);
  EXPECT_GE(Counted::copies.load(), 1)
      << "get_or_compute returns a copy (the comparison above is meaningful)";
  EXPECT_EQ(cache.stats().hits, 2u);
}

/// Two halves that a writer always sets equal: a reader that sees them differ saw a torn write.
struct Halves {
  std::uint64_t a = 0;
  std::uint64_t b = 0;
};

TEST(CacheVisit, ReadersInPlaceNeverSeeAHalfReplacedValue) {
  constexpr int kReaders = 3;
  constexpr std::uint64_t kWrites = 3000;
  Cache<Halves> cache;
  cache.put("k", Halves{0, 0});
  std::atomic<bool> done{false};
  std::atomic<int> torn{0};
  std::latch started(kReaders + 1);
  std::vector<std::jthread> readers;
  for (int r = 0; r < kReaders; ++r) {
    readers.emplace_back([&] {
      started.arrive_and_wait();
      while (!done.load(std::memory_order_relaxed)) {
        cache.visit(
            "k", [] { return Halves{}; },
            [&](const Halves& h) {
              if (h.a != h.b) torn.fetch_add(1);
            });
      }
    });
  }
  started.arrive_and_wait();
  for (std::uint64_t i = 1; i <= kWrites; ++i) cache.put("k", Halves{i, i});
  done.store(true);
  readers.clear();  // joins
  EXPECT_EQ(torn.load(), 0);
  EXPECT_EQ(cache.visit(
                "k", [] { return Halves{}; }, [](const Halves& h) { return h.a; }),
            kWrites);
}

// ---- backend failures ---------------------------------------------------------------------------

/// A TokenLock whose every call fails like an unreachable server.
class DownLock final : public stampede::TokenLock {
 private:
  std::optional<stampede::LockToken> do_try_acquire(std::string_view, std::chrono::milliseconds) override {
    fail();
  }
  bool do_release(std::string_view, std::string_view) override { fail(); }
  bool do_renew(std::string_view, std::string_view, std::chrono::milliseconds) override { fail(); }
  std::uint64_t do_bump_fence(std::string_view) override { fail(); }
  std::unique_ptr<stampede::Subscription> do_subscribe(std::string_view) override { fail(); }
  void do_notify(std::string_view) override { fail(); }

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

// ---- a Cache destroyed on its own refresher thread ---------------------------------------------

/// Declared before a Cache member, it is destroyed after the Cache: tells the test which thread
/// destroyed it.
struct DestroyedSignal {
  std::promise<std::thread::id> promise;
  ~DestroyedSignal() { promise.set_value(std::this_thread::get_id()); }
};

/// An application object that owns a Cache, as a service owns its cache.
struct Owner {
  explicit Owner(CacheOptions o) : cache(std::move(o)) {}
  DestroyedSignal destroyed;
  Cache<int> cache;
};

TEST(CacheLifetimeTest, LoaderHoldingTheLastReferenceToTheOwnerDestroysTheCacheOnItsRefresherThread) {
  auto clock = std::make_shared<stampede::ManualClock>();
  CacheOptions o;
  o.mode = stampede::Mode::stale_while_revalidate;
  o.soft_ttl = 10s;
  o.swr_window = 10s;
  o.clock = clock;
  auto owner = std::make_shared<Owner>(o);
  std::future<std::thread::id> destroyed = owner->destroyed.promise.get_future();
  ASSERT_EQ(owner->cache.get_or_compute("k", [] { return 1; }), 1);
  clock->advance(11s);
  auto refreshing = std::make_shared<stampede_test::Gate>();
  auto release = std::make_shared<stampede_test::Gate>();
  // The refresh's loader captures the owner: "capture only what outlives the Cache".
  EXPECT_EQ(owner->cache.get_or_compute("k",
                                        [owner, refreshing, release] {
                                          refreshing->open();
                                          release->wait();
                                          return 2;
                                        }),
            1);
  ASSERT_TRUE(refreshing->wait_for()) << "the stale hit did not schedule a refresh";
  const std::weak_ptr<Owner> weak = owner;
  owner.reset();  // the refresh task now holds the last reference
  release->open();
  ASSERT_EQ(destroyed.wait_for(stampede_test::kHangGuard), std::future_status::ready)
      << "the owner (and its Cache) was never destroyed";
  EXPECT_NE(destroyed.get(), std::this_thread::get_id()) << "expected the refresher thread to destroy it";
  EXPECT_TRUE(weak.expired());
}

// ---- a value whose copy throws while it is published -----------------------------------------------

struct CopyError : std::runtime_error {
  CopyError() : std::runtime_error("copy failed") {}
};

/// A value whose copy constructor throws CopyError once after `fail_next_copy` is set. Moves never
/// throw.
struct Fragile {
  Fragile() = default;
  explicit Fragile(int v) : value(v) {}
  Fragile(const Fragile& other) : value(other.value) {
    if (fail_next_copy.exchange(false)) throw CopyError();
  }
  Fragile(Fragile&&) noexcept = default;
  Fragile& operator=(const Fragile&) = default;
  Fragile& operator=(Fragile&&) noexcept = default;

  int value = 0;
  static inline std::atomic<bool> fail_next_copy{false};
};

TEST(CacheTest, CopyThatThrowsWhileTheLeaderPublishesReachesTheWaitersAtOnce) {
  constexpr int kCallers = 5;
  CacheOptions o;
  // A waiter that is never told sits out wait_timeout: far longer than the hang guards below.
  o.wait_timeout = 2min;
  o.on_wait_timeout = stampede::OnWaitTimeout::throw_error;
  std::atomic<int> returned{0};
  // The leader writes after it published: hold it there (its flight stays joinable) until every
  // waiter has returned.
  auto store = std::make_shared<stampede_test::PutHookStore<Fragile>>(
      std::make_shared<stampede::MemoryStore<Fragile>>(), [&] {
        EXPECT_TRUE(stampede_test::eventually([&] { return returned.load() >= kCallers - 1; }))
            << "the waiters were not told that publishing the value failed";
      });
  Cache<Fragile> cache(o, {store, std::make_shared<stampede::MemoryTokenLock>(), "memory"});
  std::latch start(kCallers);
  auto loader = [&] {
    EXPECT_TRUE(stampede_test::eventually([&] { return cache.stats().misses >= kCallers; }));
    Fragile::fail_next_copy = true;  // the next copy is the one that publishes the value
    return Fragile(7);
  };
  std::vector<std::string> got(kCallers);
  {
    std::vector<std::jthread> threads;
    for (int i = 0; i < kCallers; ++i) {
      threads.emplace_back([&, i] {
        start.arrive_and_wait();
        try {
          got[i] = std::to_string(cache.get_or_compute("k", loader).value);
        } catch (const CopyError& e) {
          got[i] = e.what();
        } catch (const std::exception& e) {
          got[i] = std::string("other exception: ") + e.what();
        }
        returned.fetch_add(1);
      });
    }
  }
  EXPECT_EQ(std::count(got.begin(), got.end(), "7"), 1) << "the leader keeps its value";
  EXPECT_EQ(std::count(got.begin(), got.end(), "copy failed"), kCallers - 1)
      << "every waiter gets the copy's exception";
  ASSERT_TRUE(cache.get("k"));
  EXPECT_EQ(cache.get("k")->value, 7);
}

// ---- a loader whose copy throws -------------------------------------------------------------------

/// A loader whose copy constructor throws CopyError while `fail_copies` is set. Calling it counts.
struct CopyFailingLoader {
  CopyFailingLoader(std::atomic<int>& calls, std::atomic<bool>& fail_copies)
      : calls_(&calls), fail_copies_(&fail_copies) {}
  CopyFailingLoader(const CopyFailingLoader& other) : calls_(other.calls_), fail_copies_(other.fail_copies_) {
    if (fail_copies_->load()) throw CopyError();
  }
  CopyFailingLoader& operator=(const CopyFailingLoader&) = delete;
  int operator()() const { return calls_->fetch_add(1) + 1; }

  std::atomic<int>* calls_;
  std::atomic<bool>* fail_copies_;
};

// With a loader timeout the leader copies its loader for the background load thread: a copy that
// throws reaches the caller, and leaves neither the flight nor the lock behind.
TEST(CacheTest, ALoaderWhoseCopyThrowsAtTheBackgroundHandOffFailsThatCallAndReleasesEverything) {
  CacheOptions o;
  o.loader_hard_timeout = 1h;  // on: the load is handed to a background thread, with a copy
  auto lock = std::make_shared<stampede::MemoryTokenLock>();
  Cache<int> cache(o, {std::make_shared<stampede::MemoryStore<int>>(), lock, "memory"});
  std::atomic<int> calls{0};
  std::atomic<bool> fail_copies{true};
  const CopyFailingLoader loader(calls, fail_copies);
  EXPECT_THROW(cache.get_or_compute("k", loader), CopyError);
  EXPECT_EQ(calls.load(), 0) << "the loader ran although its copy failed";
  // The lock was released (a fresh holder gets it at once) and the next call starts a new flight.
  auto token = lock->try_acquire("k", 1min);
  ASSERT_TRUE(token) << "the failed hand-off kept the key's lock";
  ASSERT_TRUE(lock->release("k", token->token));
  fail_copies = false;
  EXPECT_EQ(cache.get_or_compute("k", loader), 1);
  EXPECT_EQ(cache.get_or_compute("k", loader), 1) << "the value was not stored";
}

// A stale hit copies the loader for its refresh: when that copy throws, the caller still gets the
// stale value it hit (the refresh is the Cache's business), the failure is counted and reported, and
// a later hit schedules the refresh again.
TEST(CacheTest, ALoaderWhoseCopyThrowsWhenARefreshIsScheduledStillServesTheStaleValue) {
  auto clock = std::make_shared<stampede::ManualClock>();
  CacheOptions o{.mode = stampede::Mode::stale_while_revalidate, .soft_ttl = 1s, .swr_window = 1h};
  o.clock = clock;
  std::vector<std::string> failed;
  o.on_event = [&](const stampede::Event& e) {
    if (e.type == stampede::EventType::refresh_failed) failed.emplace_back(e.detail);
  };
  Cache<int> cache(o);
  std::atomic<int> calls{0};
  std::atomic<bool> fail_copies{false};
  const CopyFailingLoader loader(calls, fail_copies);
  EXPECT_EQ(cache.get_or_compute("k", loader), 1);
  clock->advance(2s);  // stale: a hit schedules a refresh, with a copy of the loader
  fail_copies = true;
  EXPECT_EQ(cache.get_or_compute("k", loader), 1) << "the stale hit was not served";
  EXPECT_EQ(cache.stats().refresh_failures, 1u);
  EXPECT_EQ(failed, std::vector<std::string>{"copy failed"});
  fail_copies = false;
  EXPECT_EQ(cache.get_or_compute("k", loader), 1);
  cache.wait_idle();
  EXPECT_EQ(calls.load(), 2) << "the refresh after the failed copy ran once";
  EXPECT_EQ(cache.get_or_compute("k", loader), 2);
}

// ---- a subscribe that fails ----------------------------------------------------------------------

/// A TokenLock that forwards to another, except that subscribe() fails like a Redis user without
/// channel rights (the Redis 7 default for new ACL users).
class NoSubscribeLock final : public stampede::TokenLock {
 public:
  explicit NoSubscribeLock(std::shared_ptr<stampede::TokenLock> inner) : inner_(std::move(inner)) {}

 private:
  std::optional<stampede::LockToken> do_try_acquire(std::string_view key,
                                                    std::chrono::milliseconds ttl) override {
    return inner_->try_acquire(key, ttl);
  }
  bool do_release(std::string_view key, std::string_view token) override {
    return inner_->release(key, token);
  }
  bool do_renew(std::string_view key, std::string_view token, std::chrono::milliseconds ttl) override {
    return inner_->renew(key, token, ttl);
  }
  std::uint64_t do_bump_fence(std::string_view key) override { return inner_->bump_fence(key); }
  std::unique_ptr<stampede::Subscription> do_subscribe(std::string_view) override {
    throw stampede::backend_error("NOPERM this user has no permissions to access one of the channels");
  }
  void do_notify(std::string_view key) override { inner_->notify(key); }

  std::shared_ptr<stampede::TokenLock> inner_;
};

TEST(CacheTest, FailedSubscribeMakesTheWaitingLeaderPollInsteadOfLoading) {
  auto clock = std::make_shared<stampede::ManualClock>();
  stampede::Backend<int> backend = stampede::memory_backend<int>(0, clock);
  CacheOptions o;
  o.clock = clock;
  o.wait_timeout = 10min;
  o.poll_interval = 10ms;
  Cache<int> first(o, backend);  // another process, loading
  std::atomic<int> backend_events{0};
  CacheOptions o2 = o;
  o2.on_event = [&](const stampede::Event& e) {
    if (e.type == stampede::EventType::backend_error) backend_events.fetch_add(1);
  };
  Cache<int> second(o2, {backend.store, std::make_shared<NoSubscribeLock>(backend.lock), "no-subscribe"});
  stampede_test::Gate loading;
  stampede_test::Gate release_load;
  std::atomic<int> second_loads{0};
  auto a = std::async(std::launch::async, [&] {
    return first.get_or_compute("k", [&] {
      loading.open();
      release_load.wait();
      return 5;
    });
  });
  std::future<int> b;
  stampede_test::OpenOnExit open_on_exit(release_load);  // runs before a and b are waited for
  ASSERT_TRUE(loading.wait_for()) << "the loader never ran";
  b = std::async(std::launch::async, [&] {
    return second.get_or_compute("k", [&] {
      second_loads.fetch_add(1);
      return -1;
    });
  });
  ASSERT_TRUE(stampede_test::eventually([&] { return second.stats().backend_errors >= 1; }))
      << "the second cache never tried to subscribe";
  release_load.open();
  EXPECT_EQ(a.get(), 5);
  EXPECT_EQ(b.get(), 5) << "the waiting leader loaded instead of waiting for the holder's value";
  EXPECT_EQ(second_loads.load(), 0);
  const stampede::Stats st = second.stats();
  EXPECT_EQ(st.backend_errors, 1u) << "one failed subscribe, counted once";
  EXPECT_EQ(backend_events.load(), 1);
  EXPECT_EQ(st.coalesced, 1u);
  EXPECT_EQ(st.loads, 0u);
}

// ---- fork() --------------------------------------------------------------------------------------

/// What a fork()ed child reported.
struct ChildResult {
  bool exited = false;  ///< false: it hung and was killed
  int status = 0;       ///< waitpid status
  std::string report;   ///< "ok", or what went wrong
};

/// Runs `child` in a fork()ed child, which reports its return value through a pipe and _exit()s
/// (no atexit handlers, no gtest teardown in the child). The parent waits for it with a hang
/// guard and kills it if it does not exit.
ChildResult run_in_child(const std::function<std::string()>& child) {
  int fds[2];
  if (::pipe(fds) != 0) return {false, 0, "pipe() failed"};
  const pid_t pid = ::fork();
  if (pid < 0) return {false, 0, "fork() failed"};
  if (pid == 0) {
    ::close(fds[0]);
    std::string report;
    try {
      report = child();
    } catch (const std::exception& e) {
      report = std::string("exception: ") + e.what();
    } catch (...) {
      report = "non-std exception";
    }
    [[maybe_unused]] const ssize_t n = ::write(fds[1], report.data(), report.size());
    ::_exit(report == "ok" ? 0 : 1);
  }
  ::close(fds[1]);
  ChildResult result;
  result.exited = stampede_test::eventually([&] { return ::waitpid(pid, &result.status, WNOHANG) == pid; });
  if (!result.exited) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &result.status, 0);
  }
  char buf[256];
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;)
    result.report.append(buf, static_cast<std::size_t>(n));
  ::close(fds[0]);
  return result;
}

/// A TokenLock that forwards to another; in the process that built it (not in a fork()ed child),
/// try_acquire first opens `entered` and waits for `release`.
class ParentGatedLock final : public stampede_test::ForwardingLock {
 public:
  ParentGatedLock(std::shared_ptr<stampede::TokenLock> inner, stampede_test::Gate& entered,
                  stampede_test::Gate& release)
      : ForwardingLock(std::move(inner)), parent_(::getpid()), entered_(entered), release_(release) {}

 private:
  std::optional<stampede::LockToken> do_try_acquire(std::string_view key,
                                                    std::chrono::milliseconds ttl) override {
    if (::getpid() == parent_) {
      entered_.open();
      release_.wait();
    }
    return ForwardingLock::do_try_acquire(key, ttl);
  }

  const pid_t parent_;
  stampede_test::Gate& entered_;
  stampede_test::Gate& release_;
};

TEST(CacheForkTest, ChildLoadsAKeyThatItsParentWasLoadingWhenItForked) {
#ifdef STAMPEDE_TSAN
  GTEST_SKIP() << "ThreadSanitizer does not support starting threads after a multi-threaded fork()";
#endif
  stampede_test::Gate entered;
  stampede_test::Gate release;
  // The parent's leader is held inside its flight before it takes the token lock, so the child
  // inherits an in-progress flight (and no held lock).
  auto lock =
      std::make_shared<ParentGatedLock>(std::make_shared<stampede::MemoryTokenLock>(), entered, release);
  CacheOptions o;
  o.wait_timeout = 10min;
  o.on_wait_timeout = stampede::OnWaitTimeout::throw_error;
  Cache<int> cache(o, {std::make_shared<stampede::MemoryStore<int>>(), lock, "memory"});
  auto parent_call =
      std::async(std::launch::async, [&] { return cache.get_or_compute("k", [] { return 1; }); });
  stampede_test::OpenOnExit open_on_exit(release);  // runs before parent_call is waited for
  ASSERT_TRUE(entered.wait_for()) << "the parent's leader never reached the lock";

  const ChildResult child = run_in_child([&]() -> std::string {
    const int v = cache.get_or_compute("k", [] { return 2; });
    return v == 2 ? "ok" : "the child got " + std::to_string(v);
  });
  EXPECT_TRUE(child.exited) << "the child hung on the flight whose leader exists only in the parent";
  EXPECT_EQ(child.report, "ok");

  release.open();
  EXPECT_EQ(parent_call.get(), 1);
  EXPECT_EQ(cache.get("k"), 1);
}

TEST(CacheForkTest, ChildRunsItsOwnRefreshesAndWaitIdleReturns) {
#ifdef STAMPEDE_TSAN
  GTEST_SKIP() << "ThreadSanitizer does not support starting threads after a multi-threaded fork()";
#endif
  auto clock = std::make_shared<stampede::ManualClock>();
  CacheOptions o;
  o.mode = stampede::Mode::stale_while_revalidate;
  o.soft_ttl = 10s;
  o.swr_window = 10s;
  o.lock_ttl = 1h;  // no lease renewal is due while the child runs
  o.refresh_threads = 1;
  o.clock = clock;
  Cache<int> cache(o);
  ASSERT_EQ(cache.get_or_compute("a", [] { return 1; }), 1);
  ASSERT_EQ(cache.get_or_compute("b", [] { return 1; }), 1);
  clock->advance(11s);
  stampede_test::Gate refreshing;
  stampede_test::Gate release;
  stampede_test::OpenOnExit open_on_exit(release);
  // The parent's only refresher thread is busy with "a" when it forks.
  EXPECT_EQ(cache.get_or_compute("a",
                                 [&] {
                                   refreshing.open();
                                   release.wait();
                                   return 2;
                                 }),
            1);
  ASSERT_TRUE(refreshing.wait_for()) << "the stale hit did not schedule a refresh";

  const ChildResult child = run_in_child([&]() -> std::string {
    // The child's embedded store starts empty (MemoryStore), so it loads "b", then lets it go stale.
    if (cache.get_or_compute("b", [] { return 3; }) != 3) return "the child did not load its own value";
    clock->advance(11s);
    if (cache.get_or_compute("b", [] { return 4; }) != 3)
      return "the stale hit did not serve the stale value";
    cache.wait_idle();
    const std::optional<int> b = cache.get("b");
    return b == 4 ? "ok" : "the child's refresh did not store its value";
  });
  EXPECT_TRUE(child.exited) << "the child's refresh never ran or its wait_idle() never returned";
  EXPECT_EQ(child.report, "ok");

  release.open();
  cache.wait_idle();
  EXPECT_EQ(cache.get("a"), 2);
}

// ---- where two features meet ---------------------------------------------------------------------

/// A store whose get() of a pinned key returns the copy it read when pinned, whatever the inner
/// store holds since: a near cache whose invalidation has not arrived yet. Everything else goes to
/// the inner store. Thread-safe.
template <class T>
class LaggingStore final : public stampede::Store<T> {
 public:
  explicit LaggingStore(std::shared_ptr<stampede::Store<T>> inner) : inner_(std::move(inner)) {}
  /// From now on get(key) returns what the inner store holds now (however old).
  void pin(std::string_view key) {
    std::lock_guard lock(mu_);
    pinned_key_ = key;
    pinned_ = inner_->get(key, std::chrono::system_clock::time_point::min());
  }
  void unpin() {
    std::lock_guard lock(mu_);
    pinned_key_.clear();
  }
  std::optional<stampede::Entry<T>> get(std::string_view key,
                                        std::chrono::system_clock::time_point now) override {
    {
      std::lock_guard lock(mu_);
      if (!pinned_key_.empty() && key == pinned_key_) {
        if (pinned_ && now < pinned_->hard_expiry) return pinned_;
        return std::nullopt;
      }
    }
    return inner_->get(key, now);
  }
  stampede::PutResult put(std::string_view key, const stampede::Entry<T>& entry,
                          std::chrono::system_clock::time_point now) override {
    return inner_->put(key, entry, now);
  }
  stampede::PutResult put_if_unchanged(std::string_view key, std::uint64_t expected,
                                       const stampede::Entry<T>& entry,
                                       std::chrono::system_clock::time_point now) override {
    return inner_->put_if_unchanged(key, expected, entry, now);  // judged by the inner store
  }
  std::optional<stampede::Entry<T>> get_authoritative(std::string_view key,
                                                      std::chrono::system_clock::time_point now) override {
    return inner_->get(key, now);
  }
  void invalidate(std::string_view key, std::uint64_t fence) override { inner_->invalidate(key, fence); }

 private:
  std::shared_ptr<stampede::Store<T>> inner_;
  std::mutex mu_;
  std::string pinned_key_;
  std::optional<stampede::Entry<T>> pinned_;
};

// Fail-safe x a copy that lags the store (the near cache x fail-safe, issue 15 case 1): the last
// good value read from the lagging copy was re-armed under the failed load's fence, drawn after
// the invalidation, so the invalidated value came back for everyone.
TEST(CacheFailSafePairs, AValueReplacedAfterTheCopyItWasReadFromIsNeitherServedNorReArmed) {
  for (bool by_put : {false, true}) {
    SCOPED_TRACE(by_put ? "replaced by put()" : "removed by invalidate()");
    auto clock = std::make_shared<stampede::ManualClock>();
    stampede::Backend<std::string> memory = stampede::memory_backend<std::string>(0, clock);
    auto lagging = std::make_shared<LaggingStore<std::string>>(memory.store);
    Cache<std::string> cache({.ttl = 1s, .fail_safe_max_age = 60s, .fail_safe_throttle = 20s, .clock = clock},
                             {lagging, memory.lock, "lagging"});
    ASSERT_EQ(cache.get_or_compute("k", [] { return std::string("v1"); }), "v1");
    clock->advance(2s);  // expired: kept as the last good value
    lagging->pin("k");   // the local copy lags from here on
    if (by_put) {
      cache.put("k", "v2");
    } else {
      cache.invalidate("k");
    }
    auto failing = []() -> std::string { throw std::runtime_error("db down"); };
    // After a put the leader's double check (which reads past the lagging copy) finds v2; after an
    // invalidate the load fails and fail-safe finds only the lagging v1, which it must not serve.
    std::optional<std::string> got;
    try {
      got = cache.get_or_compute("k", failing);
    } catch (const std::runtime_error&) {
    }
    EXPECT_EQ(got, by_put ? std::optional<std::string>("v2") : std::nullopt)
        << "served a value replaced after it was stored";
    lagging->unpin();
    const std::optional<std::string> now = cache.get("k");
    if (by_put) {
      EXPECT_EQ(now, "v2") << "the re-arm overwrote the newer put";
    } else {
      EXPECT_EQ(now, std::nullopt) << "the invalidated value was re-armed";
    }
    EXPECT_EQ(cache.stats().fail_safe_served, 0u);
  }
}

/// A store that refuses the first `refusals` puts (as if a higher fence had been seen) without
/// storing them; everything else goes to the inner store.
template <class T>
class RefusingStore final : public stampede::Store<T> {
 public:
  RefusingStore(std::shared_ptr<stampede::Store<T>> inner, int refusals)
      : inner_(std::move(inner)), refusals_(refusals) {}
  std::optional<stampede::Entry<T>> get(std::string_view key,
                                        std::chrono::system_clock::time_point now) override {
    return inner_->get(key, now);
  }
  stampede::PutResult put(std::string_view key, const stampede::Entry<T>& entry,
                          std::chrono::system_clock::time_point now) override {
    if (refusals_.fetch_sub(1) > 0) return stampede::PutResult::stale_fence;
    return inner_->put(key, entry, now);
  }
  void invalidate(std::string_view key, std::uint64_t fence) override { inner_->invalidate(key, fence); }

 private:
  std::shared_ptr<stampede::Store<T>> inner_;
  std::atomic<int> refusals_;
};

// put() returned normally when its write was refused (on Redis: the fence hash vanished between
// drawing the fence and the write), and get() then returned the value put() had replaced.
TEST(CachePut, AWriteRefusedOnceIsRetriedWithANewFence) {
  stampede::Backend<int> memory = stampede::memory_backend<int>();
  const auto forever = std::chrono::system_clock::time_point::max();
  memory.store->put("k", {.value = 1, .soft_expiry = forever, .hard_expiry = forever, .fence = 1}, {});
  Cache<int> cache({}, {std::make_shared<RefusingStore<int>>(memory.store, 1), memory.lock, "refusing"});
  cache.put("k", 2);
  EXPECT_EQ(cache.get("k"), 2) << "put() returned but its value is not there";
}

TEST(CachePut, AWriteThatIsAlwaysRefusedThrowsBackendError) {
  stampede::Backend<int> memory = stampede::memory_backend<int>();
  Cache<int> cache({}, {std::make_shared<RefusingStore<int>>(memory.store, 1000), memory.lock, "refusing"});
  EXPECT_THROW(cache.put("k", 2), stampede::backend_error);
  EXPECT_EQ(cache.get("k"), std::nullopt);
}

// ~Cache waited for a running background load but never requested its LoadContext stop token, so a
// loader that honours the token still blocked the destructor until it was done by itself.
TEST(CacheLifetimeTest, DestructionRequestsTheStopTokenOfRunningBackgroundLoadsAndRefreshes) {
  for (bool refresh : {false, true}) {
    SCOPED_TRACE(refresh ? "a background refresh (SWR)" : "a background load (loader timeout)");
    auto clock = std::make_shared<stampede::ManualClock>();
    CacheOptions o{.clock = clock};
    if (refresh) {
      o.mode = stampede::Mode::stale_while_revalidate;
    } else {
      o.loader_hard_timeout = 10ms;
    }
    auto cache = std::make_unique<Cache<int>>(o);
    stampede_test::Gate loading;
    std::atomic<bool> saw_stop{false};
    // Returns when its stop token is requested; else after the hang guard (then the test fails).
    auto loader = [&](stampede::LoadContext& ctx) {
      loading.open();
      saw_stop = stampede_test::eventually([&] { return ctx.stop_token().stop_requested(); });
      return 2;
    };
    if (refresh) {
      ASSERT_EQ(cache->get_or_compute("k", [] { return 1; }), 1);
      clock->advance(11s);  // stale: the hit schedules a refresh
      ASSERT_EQ(cache->get_or_compute("k", loader), 1);
    } else {
      EXPECT_THROW((void)cache->get_or_compute("k", loader), stampede::timeout_error);  // the load goes on
    }
    ASSERT_TRUE(loading.wait_for());
    cache.reset();
    EXPECT_TRUE(saw_stop.load()) << "the destructor waited for the loader without requesting its stop";
  }
}

}  // namespace
