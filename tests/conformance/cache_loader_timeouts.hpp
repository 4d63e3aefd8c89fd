// tests/conformance/cache_loader_timeouts.hpp: loader_soft_timeout and loader_hard_timeout. A load
// that outruns them hands its callers the old value (soft) or timeout_error (hard, nothing old)
// and goes on in the background; its value is stored under its fence when it finishes (and
// refused if an invalidate came meanwhile).
//
// A backend runs this suite through stampede_conformance_sources (tests/CMakeLists.txt); its
// factory is described in cache_fixture.hpp. A new test goes here and into the
// REGISTER_TYPED_TEST_SUITE_P list at the end.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <string>

#include "conformance/cache_fixture.hpp"
#include "stampede/cache.hpp"
#include "stampede/clock.hpp"
#include "stampede/errors.hpp"
#include "stampede/options.hpp"
#include "support/test_support.hpp"

template <class Factory>
class CacheLoaderTimeouts : public CacheConformanceFixture<Factory> {
 protected:
  /// ttl 30 s; a load gets `soft` / `hard` before its callers stop waiting for it.
  stampede::CacheOptions timeouts(std::chrono::milliseconds soft, std::chrono::milliseconds hard) const {
    stampede::CacheOptions o = this->options();
    o.loader_soft_timeout = soft;
    o.loader_hard_timeout = hard;
    return o;
  }
};

TYPED_TEST_SUITE_P(CacheLoaderTimeouts);

TYPED_TEST_P(CacheLoaderTimeouts, SoftTimeoutServesTheOldValueAndTheLoadStoresItsOwnLater) {
  stampede::Cache<int> cache(this->timeouts(std::chrono::milliseconds(20), {}), this->backend());
  std::atomic<int> loads{0};
  stampede_test::Gate release;
  auto loader = [&loads, &release] {
    if (loads.fetch_add(1) == 0) return 1;  // the warm-up
    EXPECT_TRUE(release.wait_for());
    return 2;
  };
  stampede_test::OpenOnExit unblock(release);
  ASSERT_EQ(cache.get_or_compute("k", loader), 1);
  // The load ran in the background: it stores after its callers have the value. Expire the
  // value only once it is stored (the clock also expires the lock of an embedded backend).
  ASSERT_TRUE(stampede_test::eventually([&] { return cache.get("k") == std::optional<int>(1); }));
  this->clock_->advance(std::chrono::seconds(31));  // expired; the store still holds it
  // The load is blocked: the caller can only have returned because the soft timeout passed.
  EXPECT_EQ(cache.get_or_compute("k", loader), 1);
  EXPECT_EQ(cache.get_or_compute("k", loader), 1) << "a caller during the load gets the old value too";
  EXPECT_EQ(loads.load(), 2) << "one load for every caller";
  release.open();
  EXPECT_TRUE(stampede_test::eventually([&] { return cache.get("k") == std::optional<int>(2); }))
      << "the background load did not store its value";
  const stampede::Stats st = cache.stats();
  EXPECT_EQ(st.soft_timeouts, 1u);
  EXPECT_EQ(st.stale_served, 2u) << "each caller handed the old value counts";
  EXPECT_EQ(st.background_loads, 2u);
}

TYPED_TEST_P(CacheLoaderTimeouts, BackgroundStoreIsRefusedAfterAnInvalidate) {
  stampede::Cache<int> cache(this->timeouts(std::chrono::milliseconds(20), {}), this->backend());
  std::atomic<int> loads{0};
  stampede_test::Gate release;
  auto loader = [&loads, &release] {
    if (loads.fetch_add(1) == 0) return 1;
    EXPECT_TRUE(release.wait_for());
    return 2;
  };
  stampede_test::OpenOnExit unblock(release);
  ASSERT_EQ(cache.get_or_compute("k", loader), 1);
  // The load ran in the background: it stores after its callers have the value. Expire the
  // value only once it is stored (the clock also expires the lock of an embedded backend).
  ASSERT_TRUE(stampede_test::eventually([&] { return cache.get("k") == std::optional<int>(1); }));
  this->clock_->advance(std::chrono::seconds(31));
  EXPECT_EQ(cache.get_or_compute("k", loader), 1);
  cache.invalidate("k");  // while the load runs in the background
  release.open();
  EXPECT_TRUE(stampede_test::eventually([&] { return cache.stats().stale_writes_rejected == 1; }))
      << "the background load's store was not refused";
  EXPECT_EQ(cache.get("k"), std::nullopt);
}

TYPED_TEST_P(CacheLoaderTimeouts, HardTimeoutThrowsAndTheLoadStillStores) {
  stampede::Cache<int> cache(this->timeouts({}, std::chrono::milliseconds(20)), this->backend());
  stampede_test::Gate release;
  auto loader = [&release] {
    EXPECT_TRUE(release.wait_for());
    return 2;
  };
  stampede_test::OpenOnExit unblock(release);
  EXPECT_THROW((void)cache.get_or_compute("k", loader), stampede::timeout_error);
  EXPECT_EQ(cache.stats().hard_timeouts, 1u);
  release.open();
  EXPECT_TRUE(stampede_test::eventually([&] { return cache.get("k") == std::optional<int>(2); }))
      << "the background load did not store its value";
}

TYPED_TEST_P(CacheLoaderTimeouts, FastLoadReturnsItsValueAndBadOptionsAreRefused) {
  stampede::Cache<int> cache(this->timeouts(std::chrono::minutes(1), std::chrono::minutes(2)),
                             this->backend());
  EXPECT_EQ(cache.get_or_compute("k", [] { return 3; }), 3);
  EXPECT_EQ(cache.get("k"), 3);
  try {
    stampede::Cache<int> bad(this->timeouts(std::chrono::seconds(2), std::chrono::seconds(1)),
                             this->backend());
    ADD_FAILURE() << "hard < soft was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_TRUE(stampede_test::mentions_word(e.what(), "loader_hard_timeout")) << e.what();
  }
}

// Loader timeouts x the background queue x unrelated keys: with every background thread busy with
// slow loads of other keys, a fast load was queued behind them and its caller (nothing old, no hard
// timeout) waited as long as they ran. It runs on its caller's thread instead.
TYPED_TEST_P(CacheLoaderTimeouts, AFastLoadNeverWaitsBehindSlowLoadsOfOtherKeys) {
  stampede::CacheOptions o = this->timeouts(std::chrono::milliseconds(20), {});
  o.background_load_threads = 2;
  stampede::Cache<int> cache(o, this->backend());
  cache.put("a", 1);
  cache.put("b", 1);
  this->clock_->advance(std::chrono::seconds(31));  // both expired; the store still holds them
  stampede_test::Gate release;
  auto slow = [&release] {
    release.wait();  // opened on exit: never before the fast load below has returned
    return 2;
  };
  std::future<int> fast;
  stampede_test::OpenOnExit unblock(release);
  EXPECT_EQ(cache.get_or_compute("a", slow), 1);  // the old value at the soft timeout
  EXPECT_EQ(cache.get_or_compute("b", slow), 1);  // both threads are now busy with blocked loads
  fast = std::async(std::launch::async, [&cache] { return cache.get_or_compute("c", [] { return 3; }); });
  ASSERT_EQ(fast.wait_for(stampede_test::kHangGuard), std::future_status::ready)
      << "the fast load waited behind the slow loads of other keys";
  EXPECT_EQ(fast.get(), 3);
}

// Loader timeouts x per-call cancellation: the soft timeout was applied by the leader's caller
// alone, so when that caller stopped waiting, its waiters got no old value and waited for the
// whole load. The timeout belongs to the flight: every caller of it applies it.
TYPED_TEST_P(CacheLoaderTimeouts, ACancelledLeaderLeavesTheSoftTimeoutToItsWaiters) {
  // On a healthy machine the stop comes well before the soft timeout; the assertions also hold
  // if it does not (then the leader itself got the old value).
  stampede::Cache<int> cache(this->timeouts(std::chrono::milliseconds(500), {}), this->backend());
  cache.put("k", 1);
  this->clock_->advance(std::chrono::seconds(31));
  stampede_test::Gate loading, release;
  auto slow = [&] {
    loading.open();
    release.wait();  // opened on exit: never before the waiter below has returned
    return 2;
  };
  std::stop_source stop;
  std::future<std::string> leader;
  std::future<int> waiter;
  stampede_test::OpenOnExit unblock(release);
  leader = std::async(std::launch::async, [&] {
    try {
      return std::to_string(cache.get_or_compute("k", slow, {.stop = stop.get_token()}));
    } catch (const stampede::cancelled_error&) {
      return std::string("cancelled");
    }
  });
  ASSERT_TRUE(loading.wait_for());  // the load runs in the background; the leader waits for it
  waiter = std::async(std::launch::async, [&] { return cache.get_or_compute("k", slow); });
  ASSERT_TRUE(stampede_test::eventually([&] { return cache.stats().misses == 2; }));  // it joined
  stop.request_stop();
  const std::string led = leader.get();
  EXPECT_TRUE(led == "cancelled" || led == "1") << led;
  ASSERT_EQ(waiter.wait_for(stampede_test::kHangGuard), std::future_status::ready)
      << "the waiter waited for the whole load instead of getting the old value at the soft timeout";
  EXPECT_EQ(waiter.get(), 1);
  EXPECT_EQ(cache.stats().soft_timeouts, 1u);
}

REGISTER_TYPED_TEST_SUITE_P(CacheLoaderTimeouts, SoftTimeoutServesTheOldValueAndTheLoadStoresItsOwnLater,
                            BackgroundStoreIsRefusedAfterAnInvalidate, HardTimeoutThrowsAndTheLoadStillStores,
                            FastLoadReturnsItsValueAndBadOptionsAreRefused,
                            AFastLoadNeverWaitsBehindSlowLoadsOfOtherKeys,
                            ACancelledLeaderLeavesTheSoftTimeoutToItsWaiters);
