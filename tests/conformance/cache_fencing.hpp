// tests/conformance/cache_fencing.hpp: fenced writes on every backend: a load that started before
// an invalidate() or a put() never overwrites it, and a caller that starts after one never gets
// such a load's value; a store rejects a write with a lower fence than it has seen (an
// invalidation's fence included); a holder whose lock expired cannot overwrite a newer value.
//
// A backend runs this suite through stampede_conformance_sources (tests/CMakeLists.txt); its
// factory is described in cache_fixture.hpp. A new test goes here and into the
// REGISTER_TYPED_TEST_SUITE_P list at the end.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <optional>

#include "conformance/cache_fixture.hpp"
#include "stampede/cache.hpp"
#include "stampede/clock.hpp"
#include "stampede/options.hpp"
#include "support/test_support.hpp"

template <class Factory>
class CacheFencing : public CacheConformanceFixture<Factory> {
 protected:
  /// "Update the row, invalidate (or put), read your own write": a load of "k" reads the row and
  /// is held right after; the row changes and `update(cache)` runs; a caller that starts after
  /// that must get the new row, not the held load's value. The held load is released only once
  /// the new caller has started a flight of its own (it then finds the held load's lock).
  void expect_a_later_caller_to_read_the_new_row(const std::function<void(stampede::Cache<int>&)>& update) {
    stampede::CacheOptions o = this->options();
    o.lock_ttl = std::chrono::hours(1);  // the held load keeps its lock whatever the test clock does
    stampede::Cache<int> cache(o, this->backend());
    std::atomic<int> row{1};
    std::atomic<int> loads{0};
    stampede_test::Gate loading;
    stampede_test::Gate release_old_load;
    auto loader = [&] {
      const int value = row.load();
      if (loads.fetch_add(1) == 0) {  // the first load: paused after reading the old row
        loading.open();
        release_old_load.wait();
      }
      return value;
    };
    auto old_caller = std::async(std::launch::async, [&] { return cache.get_or_compute("k", loader); });
    std::future<int> new_caller;
    stampede_test::OpenOnExit open_on_exit(release_old_load);  // runs before the futures are waited for
    ASSERT_TRUE(loading.wait_for()) << "the loader never ran";
    row.store(2);
    update(cache);
    new_caller = std::async(std::launch::async, [&] { return cache.get_or_compute("k", loader); });
    EXPECT_TRUE(stampede_test::eventually([&] { return cache.stats().lock_contended >= 1; }))
        << "the new caller joined the load that started before the update instead of starting its own";
    release_old_load.open();
    EXPECT_EQ(old_caller.get(), 1) << "the held load's caller gets the value it loaded";
    EXPECT_EQ(new_caller.get(), 2) << "a call that began after the update got a value loaded before it";
    EXPECT_EQ(loads.load(), 2);
    EXPECT_EQ(cache.get("k"), 2);
    EXPECT_EQ(cache.stats().stale_writes_rejected, 1u) << "the held load's value was stored";
  }
};

TYPED_TEST_SUITE_P(CacheFencing);

TYPED_TEST_P(CacheFencing, InvalidateDuringALoadKeepsThatLoadsValueOut) {
  stampede::Cache<int> cache(this->options(), this->backend());
  stampede_test::Gate release_load;
  stampede_test::Gate loading;
  auto caller = std::async(std::launch::async, [&] {
    return cache.get_or_compute("k", [&] {
      loading.open();
      release_load.wait();
      return 1;  // loaded before the invalidation: must not be stored after it
    });
  });
  stampede_test::OpenOnExit open_on_exit(release_load);
  ASSERT_TRUE(loading.wait_for()) << "the loader never ran";
  cache.invalidate("k");
  release_load.open();
  EXPECT_EQ(caller.get(), 1) << "the caller still gets the value it loaded";
  EXPECT_EQ(cache.get("k"), std::nullopt) << "a load older than invalidate() was stored";
  EXPECT_EQ(cache.stats().stale_writes_rejected, 1u);
  EXPECT_EQ(cache.get_or_compute("k", [] { return 2; }), 2);
  EXPECT_EQ(cache.get("k"), 2);
}

TYPED_TEST_P(CacheFencing, PutDuringALoadWins) {
  stampede::Cache<int> cache(this->options(), this->backend());
  stampede_test::Gate release_load;
  stampede_test::Gate loading;
  auto caller = std::async(std::launch::async, [&] {
    return cache.get_or_compute("k", [&] {
      loading.open();
      release_load.wait();
      return 1;
    });
  });
  stampede_test::OpenOnExit open_on_exit(release_load);
  ASSERT_TRUE(loading.wait_for()) << "the loader never ran";
  cache.put("k", 99);
  release_load.open();
  EXPECT_EQ(caller.get(), 1);
  EXPECT_EQ(cache.get("k"), 99) << "an older load overwrote put()";
  EXPECT_EQ(cache.stats().stale_writes_rejected, 1u);
}

TYPED_TEST_P(CacheFencing, CallerAfterInvalidateNeverGetsALoadThatStartedBeforeIt) {
  this->expect_a_later_caller_to_read_the_new_row([](stampede::Cache<int>& cache) { cache.invalidate("k"); });
}

TYPED_TEST_P(CacheFencing, CallerAfterPutNeverGetsALoadThatStartedBeforeIt) {
  this->expect_a_later_caller_to_read_the_new_row([this](stampede::Cache<int>& cache) {
    cache.put("k", 2);
    this->clock_->advance(std::chrono::seconds(31));  // the put's entry expires: the caller misses
  });
}

TYPED_TEST_P(CacheFencing, StoreRejectsAWriteWithALowerFence) {
  stampede::Backend<int> backend = this->backend();
  const auto now = this->clock_->now();
  const auto later = now + std::chrono::seconds(30);
  stampede::Store<int>& store = *backend.store;
  // Fences come from the backend's lock, as the Cache's do (a store may refuse a fence it was
  // never told about: the Redis store refuses every fence for a key it holds no fence hash for).
  const std::uint64_t f = backend.lock->bump_fence("k");
  EXPECT_EQ(store.put("k", {.value = 2, .soft_expiry = later, .hard_expiry = later, .fence = f + 5}, now),
            stampede::PutResult::stored);
  EXPECT_EQ(store.put("k", {.value = 1, .soft_expiry = later, .hard_expiry = later, .fence = f + 3}, now),
            stampede::PutResult::stale_fence);
  ASSERT_TRUE(store.get("k", now));
  EXPECT_EQ(store.get("k", now)->value, 2);
  EXPECT_EQ(store.get("k", now)->fence, f + 5);
  // An invalidation's fence is remembered too.
  store.invalidate("k", f + 10);
  EXPECT_EQ(store.get("k", now), std::nullopt);
  EXPECT_EQ(store.put("k", {.value = 3, .soft_expiry = later, .hard_expiry = later, .fence = f + 7}, now),
            stampede::PutResult::stale_fence);
  EXPECT_EQ(store.get("k", now), std::nullopt);
  EXPECT_EQ(store.put("k", {.value = 4, .soft_expiry = later, .hard_expiry = later, .fence = f + 11}, now),
            stampede::PutResult::stored);
  ASSERT_TRUE(store.get("k", now));
  EXPECT_EQ(store.get("k", now)->value, 4);
}

TYPED_TEST_P(CacheFencing, SlowLoaderWhoseLockExpiredCannotOverwriteANewerValue) {
  if constexpr (!TypeParam::kClockDrivesLockExpiry) {
    GTEST_SKIP() << "needs a lock whose expiry follows the test clock";
  } else {
    stampede::Backend<int> backend = this->backend();
    stampede::CacheOptions o = this->options();
    o.lock_ttl = std::chrono::seconds(1);
    stampede::Cache<int> slow(o, backend);
    o.wait_timeout = std::chrono::seconds(10);  // only reached if the expired lock is not taken over
    o.on_wait_timeout = stampede::OnWaitTimeout::throw_error;
    stampede::Cache<int> fast(o, backend);
    stampede_test::Gate release_load;
    stampede_test::Gate loading;
    auto a = std::async(std::launch::async, [&] {
      return slow.get_or_compute("k", [&] {
        loading.open();
        release_load.wait();  // a GC pause: the lease runs out meanwhile
        return 1;
      });
    });
    stampede_test::OpenOnExit open_on_exit(release_load);
    ASSERT_TRUE(loading.wait_for()) << "the loader never ran";
    this->clock_->advance(std::chrono::seconds(10));
    EXPECT_EQ(fast.get_or_compute("k", [] { return 2; }), 2);
    release_load.open();
    EXPECT_EQ(a.get(), 1);
    EXPECT_EQ(slow.stats().stale_writes_rejected, 1u);
    EXPECT_EQ(fast.get("k"), 2) << "the expired holder's write replaced the newer value";
  }
}

REGISTER_TYPED_TEST_SUITE_P(CacheFencing, InvalidateDuringALoadKeepsThatLoadsValueOut, PutDuringALoadWins,
                            CallerAfterInvalidateNeverGetsALoadThatStartedBeforeIt,
                            CallerAfterPutNeverGetsALoadThatStartedBeforeIt,
                            StoreRejectsAWriteWithALowerFence,
                            SlowLoaderWhoseLockExpiredCannotOverwriteANewerValue);
