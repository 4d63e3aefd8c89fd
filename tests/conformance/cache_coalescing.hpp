// tests/conformance/cache_coalescing.hpp: one load per key at a time on every backend: concurrent
// callers of one Cache share one flight (and only its leader touches the lock); callers in another
// "process" (a second Cache over the same backend) wait for the holder of the lock and use what it
// stored, including a value stored between their miss and their acquire (the double check).
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
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "conformance/cache_fixture.hpp"
#include "stampede/cache.hpp"
#include "stampede/clock.hpp"
#include "stampede/options.hpp"
#include "support/test_support.hpp"

template <class Factory>
class CacheCoalescing : public CacheConformanceFixture<Factory> {};

TYPED_TEST_SUITE_P(CacheCoalescing);

TYPED_TEST_P(CacheCoalescing, ThousandCallersOnAColdKeyShareOneLoad) {
  constexpr int kCallers = 1000;
  stampede::Backend<int> backend = this->backend();
  auto lock = std::make_shared<stampede_test::CountingLock>(backend.lock);
  stampede::Cache<int> cache(this->options(), {backend.store, lock, backend.name});
  std::latch start(kCallers);
  std::latch entered(kCallers);
  std::atomic<int> loads{0};
  std::vector<int> got(kCallers, -1);
  auto loader = [&] {
    // Hold the load until every caller is inside get_or_compute and has missed: only coalescing
    // can then keep the count at one. The pause after that is a slow load: it gives a caller
    // between its miss and joining the flight time to join.
    entered.wait();
    EXPECT_TRUE(stampede_test::eventually([&] { return cache.stats().misses >= kCallers; }));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    loads.fetch_add(1);
    return 42;
  };
  std::vector<std::thread> threads;
  threads.reserve(kCallers);
  for (int i = 0; i < kCallers; ++i) {
    threads.emplace_back([&, i] {
      start.arrive_and_wait();
      entered.count_down();
      got[i] = cache.get_or_compute("hot", loader);
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(loads.load(), 1);
  EXPECT_EQ(std::count(got.begin(), got.end(), 42), kCallers);
  const stampede::Stats st = cache.stats();
  EXPECT_EQ(st.loads, 1u);
  EXPECT_EQ(st.misses, static_cast<std::uint64_t>(kCallers));
  EXPECT_EQ(st.coalesced, static_cast<std::uint64_t>(kCallers - 1));
  // The followers waited on the in-process flight, not on the backend's lock.
  EXPECT_EQ(lock->successful_acquires() + lock->failed_acquires(), 1);
  EXPECT_EQ(cache.get("hot"), 42);
}

TYPED_TEST_P(CacheCoalescing, ManyKeysAtOnceLoadOncePerKey) {
  constexpr int kKeys = 25;
  constexpr int kPerKey = 20;
  constexpr int kCallers = kKeys * kPerKey;
  stampede::Cache<int> cache(this->options(), this->backend());
  std::latch start(kCallers);
  std::latch entered(kCallers);
  std::vector<std::atomic<int>> loads(kKeys);
  std::vector<int> got(kCallers, -1);
  std::vector<std::thread> threads;
  for (int i = 0; i < kCallers; ++i) {
    threads.emplace_back([&, i] {
      const int key = i % kKeys;
      start.arrive_and_wait();
      entered.count_down();
      got[i] = cache.get_or_compute("key:" + std::to_string(key), [&, key] {
        entered.wait();
        EXPECT_TRUE(stampede_test::eventually([&] { return cache.stats().misses >= kCallers; }));
        loads[key].fetch_add(1);
        return key * 10;
      });
    });
  }
  for (auto& t : threads) t.join();
  for (int k = 0; k < kKeys; ++k) EXPECT_EQ(loads[k].load(), 1) << "key:" << k;
  for (int i = 0; i < kCallers; ++i) EXPECT_EQ(got[i], (i % kKeys) * 10) << "caller " << i;
  EXPECT_EQ(cache.stats().loads, static_cast<std::uint64_t>(kKeys));
}

TYPED_TEST_P(CacheCoalescing, ValueStoredWhileTheLeaderWaitsForTheLockIsUsed) {
  stampede::Backend<int> backend = this->backend();
  stampede::Cache<int> cache(this->options(), backend);
  auto other = backend.lock->try_acquire("k", std::chrono::hours(1));
  ASSERT_TRUE(other);
  std::atomic<int> loads{0};
  auto caller = std::async(std::launch::async, [&] {
    return cache.get_or_compute("k", [&] {
      loads.fetch_add(1);
      return -1;
    });
  });
  ASSERT_TRUE(stampede_test::eventually([&] { return cache.stats().lock_contended >= 1; }));
  // The other holder stores its value with its fence, then releases.
  const auto now = this->clock_->now();
  ASSERT_EQ(backend.store->put("k",
                               {.value = 9,
                                .soft_expiry = now + std::chrono::seconds(30),
                                .hard_expiry = now + std::chrono::seconds(30),
                                .fence = other->fence},
                               now),
            stampede::PutResult::stored);
  EXPECT_TRUE(backend.lock->release("k", other->token));
  ASSERT_EQ(caller.wait_for(stampede_test::kHangGuard), std::future_status::ready);
  EXPECT_EQ(caller.get(), 9);
  EXPECT_EQ(loads.load(), 0);
  EXPECT_EQ(cache.stats().coalesced, 1u);
}

TYPED_TEST_P(CacheCoalescing, DoubleCheckUnderTheLockUsesAValueStoredAfterTheFirstMiss) {
  stampede::Backend<int> inner = this->backend();
  auto hooked = std::make_shared<stampede_test::HookedStore<int>>(inner.store);
  // The 2nd read is the double check, after the lock is taken: store there, as another process
  // that finished its load between our first miss and our acquire would have.
  hooked->before_get = [&](std::string_view key, int n) {
    if (n != 2) return;
    const auto now = this->clock_->now();
    inner.store->put(key,
                     {.value = 9,
                      .soft_expiry = now + std::chrono::seconds(30),
                      .hard_expiry = now + std::chrono::seconds(30),
                      .fence = inner.lock->bump_fence(key)},
                     now);
  };
  stampede::Cache<int> cache(this->options(), {hooked, inner.lock, inner.name});
  int loads = 0;
  EXPECT_EQ(cache.get_or_compute("k", [&] { return ++loads; }), 9);
  EXPECT_EQ(loads, 0) << "the loader ran although the double check could see a value";
  EXPECT_EQ(cache.stats().lock_acquired, 1u);
  EXPECT_GE(hooked->gets(), 2);
}

TYPED_TEST_P(CacheCoalescing, SecondCacheOnTheSameBackendWaitsForTheFirstOnesLoad) {
  // Two Caches over one backend behave as two processes sharing it.
  stampede::Backend<int> backend = this->backend();
  stampede::Cache<int> first(this->options(), backend);
  stampede::Cache<int> second(this->options(), backend);
  stampede_test::Gate release_load;
  stampede_test::Gate loading;
  std::atomic<int> first_loads{0};
  std::atomic<int> second_loads{0};
  std::future<int> b;
  auto a = std::async(std::launch::async, [&] {
    return first.get_or_compute("k", [&] {
      first_loads.fetch_add(1);
      loading.open();
      release_load.wait();
      return 5;
    });
  });
  stampede_test::OpenOnExit open_on_exit(release_load);  // runs before a and b are waited for
  ASSERT_TRUE(loading.wait_for()) << "the loader never ran";
  b = std::async(std::launch::async, [&] {
    return second.get_or_compute("k", [&] {
      second_loads.fetch_add(1);
      return -1;
    });
  });
  ASSERT_TRUE(stampede_test::eventually([&] { return second.stats().lock_contended >= 1; }));
  release_load.open();
  EXPECT_EQ(a.get(), 5);
  EXPECT_EQ(b.get(), 5);
  EXPECT_EQ(first_loads.load(), 1);
  EXPECT_EQ(second_loads.load(), 0);
  EXPECT_EQ(second.stats().coalesced, 1u);
}

REGISTER_TYPED_TEST_SUITE_P(CacheCoalescing, ThousandCallersOnAColdKeyShareOneLoad,
                            ManyKeysAtOnceLoadOncePerKey, ValueStoredWhileTheLeaderWaitsForTheLockIsUsed,
                            DoubleCheckUnderTheLockUsesAValueStoredAfterTheFirstMiss,
                            SecondCacheOnTheSameBackendWaitsForTheFirstOnesLoad);
