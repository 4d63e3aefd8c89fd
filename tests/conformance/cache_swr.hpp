// tests/conformance/cache_swr.hpp: stale-while-revalidate on every backend: a stale hit is served at
// once and refreshed once in the background; a failed refresh keeps the stale value until its hard
// expiry; past it a call is a miss; the refresh queue drops (and counts) what does not fit;
// destroying a Cache waits for its running refresh and drops the queued ones; early refresh
// (early_refresh_beta) refreshes a fresh entry before it expires, and never when it is off.
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
#include <latch>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "conformance/cache_fixture.hpp"
#include "stampede/cache.hpp"
#include "stampede/clock.hpp"
#include "stampede/options.hpp"
#include "support/test_support.hpp"

template <class Factory>
class CacheSwr : public CacheConformanceFixture<Factory> {};

TYPED_TEST_SUITE_P(CacheSwr);

TYPED_TEST_P(CacheSwr, SwrServesStaleAtOnceWhileTheRefreshIsBlocked) {
  stampede::Cache<int> cache(this->swr_options(), this->backend());
  ASSERT_EQ(cache.get_or_compute("k", [] { return 1; }), 1);
  this->clock_->advance(std::chrono::seconds(5));
  EXPECT_EQ(cache.get_or_compute("k", [] { return -1; }), 1);  // still fresh: no refresh
  cache.wait_idle();
  EXPECT_EQ(cache.stats().loads, 1u);

  this->clock_->advance(std::chrono::seconds(6));  // 11 s: stale
  stampede_test::Gate release_refresh;
  stampede_test::Gate refreshing;
  auto call = std::async(std::launch::async, [&] {
    return cache.get_or_compute("k", [&] {
      refreshing.open();
      release_refresh.wait();
      return 2;
    });
  });
  stampede_test::OpenOnExit open_on_exit(release_refresh);
  ASSERT_EQ(call.wait_for(stampede_test::kHangGuard), std::future_status::ready)
      << "a stale hit waited for its refresh";
  EXPECT_EQ(call.get(), 1);
  ASSERT_TRUE(refreshing.wait_for()) << "a stale hit did not schedule a refresh";  // in the background
  EXPECT_EQ(cache.get("k"), 1) << "still stale while the refresh is blocked";
  release_refresh.open();
  cache.wait_idle();
  EXPECT_EQ(cache.get("k"), 2);
  const stampede::Stats st = cache.stats();
  EXPECT_EQ(st.stale_hits, 2u);  // the get_or_compute and the get() above
  EXPECT_EQ(st.refreshes, 1u);
  EXPECT_EQ(st.loads, 2u);
}

TYPED_TEST_P(CacheSwr, VisitOfAStaleValueReadsItAtOnceAndRefreshesIt) {
  stampede::Cache<int> cache(this->swr_options(), this->backend());
  ASSERT_EQ(cache.get_or_compute("k", [] { return 1; }), 1);
  this->clock_->advance(std::chrono::seconds(11));  // stale, inside the window
  EXPECT_EQ(cache.visit(
                "k", [] { return 2; }, [](int v) { return v * 10; }),
            10);
  cache.wait_idle();
  EXPECT_EQ(cache.get("k"), 2) << "the stale visit did not refresh the key";
  const stampede::Stats st = cache.stats();
  EXPECT_EQ(st.stale_hits, 1u);
  EXPECT_EQ(st.refreshes, 1u);
}

TYPED_TEST_P(CacheSwr, SwrManyConcurrentStaleHitsRefreshOnce) {
  constexpr int kCallers = 64;
  stampede::Cache<int> cache(this->swr_options(), this->backend());
  ASSERT_EQ(cache.get_or_compute("k", [] { return 1; }), 1);
  this->clock_->advance(std::chrono::seconds(11));
  stampede_test::Gate release_refresh;
  std::atomic<int> refresh_loads{0};
  std::latch start(kCallers);
  std::vector<int> got(kCallers, -1);
  {
    std::vector<std::jthread> threads;
    stampede_test::OpenOnExit open_on_exit(release_refresh);
    for (int i = 0; i < kCallers; ++i) {
      threads.emplace_back([&, i] {
        start.arrive_and_wait();
        got[i] = cache.get_or_compute("k", [&] {
          refresh_loads.fetch_add(1);
          release_refresh.wait();  // held until every caller has returned
          return 2;
        });
      });
    }
    for (auto& t : threads) t.join();
  }
  cache.wait_idle();
  EXPECT_EQ(std::count(got.begin(), got.end(), 1), kCallers) << "every stale hit is served the stale value";
  EXPECT_EQ(refresh_loads.load(), 1);
  const stampede::Stats st = cache.stats();
  EXPECT_EQ(st.stale_hits, static_cast<std::uint64_t>(kCallers));
  EXPECT_EQ(st.refreshes, 1u);
  // One refresh task: a second one would have taken the lock again (and found nothing to do).
  EXPECT_EQ(st.lock_acquired, 2u);  // the first load and the refresh
  EXPECT_EQ(st.lock_contended, 0u);
  EXPECT_EQ(cache.get("k"), 2);
}

TYPED_TEST_P(CacheSwr, SwrFailedRefreshKeepsTheStaleValueUntilHardExpiry) {
  stampede::Cache<int> cache(this->swr_options(), this->backend());
  ASSERT_EQ(cache.get_or_compute("k", [] { return 1; }), 1);
  this->clock_->advance(std::chrono::seconds(11));
  auto failing = []() -> int { throw ConformanceLoadError("refresh failed"); };
  EXPECT_EQ(cache.get_or_compute("k", failing), 1);
  cache.wait_idle();
  EXPECT_EQ(cache.stats().refresh_failures, 1u);
  EXPECT_EQ(cache.get("k"), 1) << "a failed refresh dropped the stale value";
  this->clock_->advance(std::chrono::seconds(8));  // 19 s: still in the window
  EXPECT_EQ(cache.get_or_compute("k", failing), 1);
  cache.wait_idle();
  EXPECT_EQ(cache.stats().refresh_failures, 2u);
  this->clock_->advance(std::chrono::seconds(2));  // 21 s: past the hard expiry
  EXPECT_EQ(cache.get("k"), std::nullopt);
  EXPECT_THROW((void)cache.get_or_compute("k", failing), ConformanceLoadError)
      << "a miss loads in the caller";
  EXPECT_EQ(cache.get_or_compute("k", [] { return 3; }), 3);
}

TYPED_TEST_P(CacheSwr, SwrCallAfterHardExpiryIsAMiss) {
  stampede::Cache<int> cache(this->swr_options(), this->backend());
  ASSERT_EQ(cache.get_or_compute("k", [] { return 1; }), 1);
  this->clock_->advance(std::chrono::seconds(20));  // exactly soft_ttl + swr_window: gone
  int loads = 0;
  EXPECT_EQ(cache.get_or_compute("k", [&] { return ++loads + 1; }), 2);
  EXPECT_EQ(loads, 1);  // in the caller, not in the background
  const stampede::Stats st = cache.stats();
  EXPECT_EQ(st.misses, 2u);
  EXPECT_EQ(st.stale_hits, 0u);
  EXPECT_EQ(st.refreshes, 0u);
}

TYPED_TEST_P(CacheSwr, DestroyingACacheWaitsForItsRunningRefreshAndDropsQueuedOnes) {
  stampede::CacheOptions o = this->swr_options();
  o.refresh_threads = 1;
  stampede_test::Gate refreshing;
  stampede_test::Gate destroying;
  std::atomic<bool> refresh_returned{false};
  std::atomic<int> queued_loads{0};
  auto cache = std::make_unique<stampede::Cache<int>>(o, this->backend());
  stampede_test::OpenOnExit open_on_exit(destroying);  // before `cache` goes, on every path
  for (const char* key : {"a", "b", "c"}) ASSERT_EQ(cache->get_or_compute(key, [] { return 1; }), 1);
  this->clock_->advance(std::chrono::seconds(11));

  // "a" occupies the only refresh thread until the destructor has started.
  EXPECT_EQ(cache->get_or_compute("a",
                                  [&] {
                                    refreshing.open();
                                    destroying.wait();
                                    std::this_thread::sleep_for(std::chrono::milliseconds(
                                        200));  // a slow load, the destructor meanwhile
                                    refresh_returned.store(true);
                                    return 2;
                                  }),
            1);
  ASSERT_TRUE(refreshing.wait_for()) << "a stale hit did not schedule a refresh";
  // These can only queue.
  EXPECT_EQ(cache->get_or_compute("b",
                                  [&] {
                                    queued_loads.fetch_add(1);
                                    return 2;
                                  }),
            1);
  EXPECT_EQ(cache->get_or_compute("c",
                                  [&] {
                                    queued_loads.fetch_add(1);
                                    return 2;
                                  }),
            1);

  bool returned_before_destructor_finished = false;
  std::thread destroyer([&] {
    destroying.open();
    cache.reset();
    returned_before_destructor_finished = refresh_returned.load();
  });
  destroyer.join();
  EXPECT_TRUE(returned_before_destructor_finished) << "the destructor did not wait for the running refresh";
  EXPECT_EQ(queued_loads.load(), 0) << "a queued refresh ran during or after destruction";
}

TYPED_TEST_P(CacheSwr, FullRefreshQueueDropsAndCounts) {
  stampede::CacheOptions o = this->swr_options();
  o.refresh_threads = 1;
  o.refresh_queue = 1;
  stampede::Cache<int> cache(o, this->backend());
  for (const char* key : {"a", "b", "c"}) ASSERT_EQ(cache.get_or_compute(key, [] { return 1; }), 1);
  this->clock_->advance(std::chrono::seconds(11));
  stampede_test::Gate release_refresh;
  stampede_test::Gate refreshing;
  std::atomic<int> loads{0};
  auto loader = [&] {
    loads.fetch_add(1);
    return 2;
  };
  {
    stampede_test::OpenOnExit open_on_exit(release_refresh);
    EXPECT_EQ(cache.get_or_compute("a",
                                   [&] {
                                     refreshing.open();
                                     release_refresh.wait();
                                     return loader();
                                   }),
              1);
    ASSERT_TRUE(refreshing.wait_for());               // "a" runs
    EXPECT_EQ(cache.get_or_compute("b", loader), 1);  // "b" takes the one queue slot
    EXPECT_EQ(cache.get_or_compute("c", loader), 1);  // "c" does not fit
    EXPECT_EQ(cache.stats().refreshes_dropped, 1u);
  }
  cache.wait_idle();
  EXPECT_EQ(loads.load(), 2);
  EXPECT_EQ(cache.stats().refreshes, 2u);
  EXPECT_EQ(cache.get("c"), 1) << "the dropped refresh ran anyway";
  // The next stale hit on "c" schedules it again.
  EXPECT_EQ(cache.get_or_compute("c", loader), 1);
  cache.wait_idle();
  EXPECT_EQ(cache.get("c"), 2);
}

TYPED_TEST_P(CacheSwr, EarlyRefreshBetaRefreshesAFreshEntryInTheBackground) {
  stampede::CacheOptions o = this->options();
  o.early_refresh_beta = 1e15;  // with a 2 ms load, any draw of U below 1 - 1e-11 is due
  stampede::Cache<int> cache(o, this->backend());
  std::atomic<int> loads{0};
  auto slow_loader = [&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));  // load_time >= 2 ms
    return loads.fetch_add(1) + 1;
  };
  ASSERT_EQ(cache.get_or_compute("k", slow_loader), 1);
  // Fresh hits (the clock has not moved); each draws U once. Three tries make a miss impossible
  // in practice even if U happens to be exactly 1.
  for (int i = 0; i < 3 && cache.stats().refreshes == 0; ++i) {
    (void)cache.get_or_compute("k", slow_loader);
    cache.wait_idle();
  }
  EXPECT_EQ(cache.stats().refreshes, 1u);
  EXPECT_EQ(cache.get("k"), 2) << "the early refresh did not store its value";
  EXPECT_GE(cache.stats().hits, 1u);
  EXPECT_EQ(cache.stats().misses, 1u);
}

TYPED_TEST_P(CacheSwr, EarlyRefreshOffNeverRefreshesAFreshEntry) {
  stampede::Cache<int> cache(this->options(), this->backend());  // early_refresh_beta = 0
  std::atomic<int> loads{0};
  auto slow_loader = [&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    return loads.fetch_add(1) + 1;
  };
  ASSERT_EQ(cache.get_or_compute("k", slow_loader), 1);
  this->clock_->advance(std::chrono::milliseconds(29'999));  // 1 ms before expiry
  for (int i = 0; i < 100; ++i) EXPECT_EQ(cache.get_or_compute("k", slow_loader), 1);
  cache.wait_idle();
  EXPECT_EQ(loads.load(), 1);
  EXPECT_EQ(cache.stats().refreshes, 0u);
}

REGISTER_TYPED_TEST_SUITE_P(CacheSwr, SwrServesStaleAtOnceWhileTheRefreshIsBlocked,
                            VisitOfAStaleValueReadsItAtOnceAndRefreshesIt,
                            SwrManyConcurrentStaleHitsRefreshOnce,
                            SwrFailedRefreshKeepsTheStaleValueUntilHardExpiry, SwrCallAfterHardExpiryIsAMiss,
                            DestroyingACacheWaitsForItsRunningRefreshAndDropsQueuedOnes,
                            FullRefreshQueueDropsAndCounts,
                            EarlyRefreshBetaRefreshesAFreshEntryInTheBackground,
                            EarlyRefreshOffNeverRefreshesAFreshEntry);
