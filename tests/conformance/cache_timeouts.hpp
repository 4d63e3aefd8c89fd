// tests/conformance/cache_timeouts.hpp: what a caller does when the load it waits for (a flight in
// this process or the lock of another) outlasts wait_timeout, under each OnWaitTimeout policy:
// compute (one fallback load shared by every timed-out caller, never stored), throw_error
// (timeout_error, no load) and serve_stale (the expired value, or timeout_error without one).
//
// A backend runs this suite through stampede_conformance_sources (tests/CMakeLists.txt); its
// factory is described in cache_fixture.hpp. A new test goes here and into the
// REGISTER_TYPED_TEST_SUITE_P list at the end.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <future>
#include <optional>
#include <thread>
#include <vector>

#include "conformance/cache_fixture.hpp"
#include "stampede/cache.hpp"
#include "stampede/clock.hpp"
#include "stampede/errors.hpp"
#include "stampede/options.hpp"
#include "support/test_support.hpp"

template <class Factory>
class CacheTimeouts : public CacheConformanceFixture<Factory> {};

TYPED_TEST_SUITE_P(CacheTimeouts);

TYPED_TEST_P(CacheTimeouts, WaitTimeoutComputeRunsTheLoaderWithoutStoring) {
  stampede::Backend<int> backend = this->backend();
  stampede::Cache<int> cache(this->impatient(stampede::OnWaitTimeout::compute), backend);
  auto other = backend.lock->try_acquire("k", std::chrono::hours(1));  // another process is loading
  ASSERT_TRUE(other);
  int loads = 0;
  EXPECT_EQ(cache.get_or_compute("k", [&] { return ++loads * 5; }), 5);
  EXPECT_EQ(loads, 1);
  const stampede::Stats st = cache.stats();
  EXPECT_EQ(st.wait_timeouts, 1u);
  EXPECT_EQ(st.fallback_computes, 1u);
  EXPECT_GE(st.lock_contended, 1u);
  EXPECT_EQ(cache.get("k"), std::nullopt) << "a value computed without the lock was stored";
  EXPECT_TRUE(backend.lock->release("k", other->token));
}

TYPED_TEST_P(CacheTimeouts, WaitTimeoutComputeWaitersOfASlowLoadShareOneFallbackLoad) {
  constexpr int kWaiters = 49;
  stampede::Cache<int> cache(this->impatient(stampede::OnWaitTimeout::compute), this->backend());
  std::atomic<int> loads{0};
  stampede_test::Gate loading;
  auto loader = [&] {
    const int n = loads.fetch_add(1) + 1;
    if (n == 1) {
      // The leader's load is slower than wait_timeout: it returns only once every waiter has
      // timed out and gone on to its fallback.
      loading.open();
      EXPECT_TRUE(stampede_test::eventually([&] { return cache.stats().wait_timeouts >= kWaiters; }));
    }
    return n;
  };
  auto leader = std::async(std::launch::async, [&] { return cache.get_or_compute("k", loader); });
  ASSERT_TRUE(loading.wait_for()) << "the loader never ran";
  std::vector<int> got(kWaiters, -1);
  {
    std::vector<std::jthread> threads;
    for (int i = 0; i < kWaiters; ++i) {
      threads.emplace_back([&, i] { got[i] = cache.get_or_compute("k", loader); });
    }
  }
  EXPECT_EQ(leader.get(), 1);
  EXPECT_LE(loads.load(), 2) << "the timed-out waiters did not share one fallback load";
  EXPECT_EQ(std::count_if(got.begin(), got.end(), [](int v) { return v == 1 || v == 2; }), kWaiters)
      << "every waiter gets the leader's or the one fallback's value";
  const stampede::Stats st = cache.stats();
  EXPECT_EQ(st.wait_timeouts, static_cast<std::uint64_t>(kWaiters));
  EXPECT_EQ(st.fallback_computes, 1u);
  EXPECT_EQ(cache.get("k"), 1) << "the leader's value is stored, the fallback's is not";
}

TYPED_TEST_P(CacheTimeouts, WaitTimeoutComputeLeaderAndWaitersShareOneFallbackLoad) {
  // Another process holds the lock past wait_timeout: the flight's leader times out in its lock
  // wait and its waiters in their flight wait; this process still loads once.
  constexpr int kCallers = 50;
  stampede::Backend<int> backend = this->backend();
  stampede::Cache<int> cache(this->impatient(stampede::OnWaitTimeout::compute), backend);
  auto other = backend.lock->try_acquire("k", std::chrono::hours(1));
  ASSERT_TRUE(other);
  std::atomic<int> loads{0};
  auto loader = [&] {
    loads.fetch_add(1);
    // Returns only once every caller has timed out, so each had its chance to load.
    EXPECT_TRUE(stampede_test::eventually([&] { return cache.stats().wait_timeouts >= kCallers; }));
    return 5;
  };
  auto leader = std::async(std::launch::async, [&] { return cache.get_or_compute("k", loader); });
  ASSERT_TRUE(stampede_test::eventually([&] { return cache.stats().lock_contended >= 1; }));
  std::vector<int> got(kCallers - 1, -1);
  {
    std::vector<std::jthread> threads;
    for (int i = 0; i < kCallers - 1; ++i) {
      threads.emplace_back([&, i] { got[i] = cache.get_or_compute("k", loader); });
    }
  }
  EXPECT_EQ(leader.get(), 5);
  EXPECT_EQ(loads.load(), 1) << "the timed-out callers did not share one fallback load";
  EXPECT_EQ(std::count(got.begin(), got.end(), 5), kCallers - 1);
  EXPECT_EQ(cache.stats().fallback_computes, 1u);
  EXPECT_EQ(cache.get("k"), std::nullopt) << "a value computed without the lock was stored";
  EXPECT_TRUE(backend.lock->release("k", other->token));
}

TYPED_TEST_P(CacheTimeouts, WaitTimeoutThrowErrorThrowsTimeoutError) {
  stampede::Backend<int> backend = this->backend();
  stampede::Cache<int> cache(this->impatient(stampede::OnWaitTimeout::throw_error), backend);
  auto other = backend.lock->try_acquire("k", std::chrono::hours(1));
  ASSERT_TRUE(other);
  int loads = 0;
  EXPECT_THROW((void)cache.get_or_compute("k", [&] { return ++loads; }), stampede::timeout_error);
  EXPECT_EQ(loads, 0);
  EXPECT_EQ(cache.stats().wait_timeouts, 1u);
  EXPECT_EQ(cache.stats().fallback_computes, 0u);
  EXPECT_TRUE(backend.lock->release("k", other->token));
}

TYPED_TEST_P(CacheTimeouts, WaitTimeoutServeStaleServesAnExpiredValue) {
  stampede::Backend<int> backend = this->backend();
  stampede::Cache<int> cache(this->impatient(stampede::OnWaitTimeout::serve_stale), backend);
  ASSERT_EQ(cache.get_or_compute("k", [] { return 1; }), 1);
  this->clock_->advance(std::chrono::seconds(31));  // past its 30 s TTL
  ASSERT_EQ(cache.get("k"), std::nullopt);
  auto other = backend.lock->try_acquire("k", std::chrono::hours(1));
  ASSERT_TRUE(other);
  int loads = 0;
  EXPECT_EQ(cache.get_or_compute("k", [&] { return ++loads + 100; }), 1);
  EXPECT_EQ(loads, 0);
  EXPECT_EQ(cache.stats().wait_timeouts, 1u);
  EXPECT_TRUE(backend.lock->release("k", other->token));
}

TYPED_TEST_P(CacheTimeouts, WaitTimeoutServeStaleWithNothingToServeThrowsTimeoutError) {
  stampede::Backend<int> backend = this->backend();
  stampede::Cache<int> cache(this->impatient(stampede::OnWaitTimeout::serve_stale), backend);
  auto other = backend.lock->try_acquire("k", std::chrono::hours(1));
  ASSERT_TRUE(other);
  int loads = 0;
  EXPECT_THROW((void)cache.get_or_compute("k", [&] { return ++loads; }), stampede::timeout_error);
  EXPECT_EQ(loads, 0);
  EXPECT_TRUE(backend.lock->release("k", other->token));
}

REGISTER_TYPED_TEST_SUITE_P(CacheTimeouts, WaitTimeoutComputeRunsTheLoaderWithoutStoring,
                            WaitTimeoutComputeWaitersOfASlowLoadShareOneFallbackLoad,
                            WaitTimeoutComputeLeaderAndWaitersShareOneFallbackLoad,
                            WaitTimeoutThrowErrorThrowsTimeoutError,
                            WaitTimeoutServeStaleServesAnExpiredValue,
                            WaitTimeoutServeStaleWithNothingToServeThrowsTimeoutError);
