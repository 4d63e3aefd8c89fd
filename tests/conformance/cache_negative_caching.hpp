// tests/conformance/cache_negative_caching.hpp: Cache<std::optional<U>> caches an empty result for
// negative_ttl (0 = not stored), coalesced and fenced like any value.
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
#include <thread>
#include <vector>

#include "conformance/cache_fixture.hpp"
#include "stampede/cache.hpp"
#include "stampede/clock.hpp"
#include "stampede/errors.hpp"
#include "stampede/options.hpp"
#include "support/test_support.hpp"

/// The value type of this suite: a lookup that may find nothing.
using MaybeInt = std::optional<int>;

template <class Factory>
class CacheNegativeCaching : public CacheConformanceFixture<Factory> {
 protected:
  /// ttl 30 s; an empty result lives `negative_ttl`.
  stampede::CacheOptions negative(std::chrono::milliseconds negative_ttl) const {
    stampede::CacheOptions o = this->options();
    o.negative_ttl = negative_ttl;
    return o;
  }
};

TYPED_TEST_SUITE_P(CacheNegativeCaching);

TYPED_TEST_P(CacheNegativeCaching, EmptyResultLivesNegativeTtl) {
  stampede::Cache<MaybeInt> cache(this->negative(std::chrono::seconds(5)),
                                  this->template backend<MaybeInt>());
  int loads = 0;
  auto missing = [&]() -> MaybeInt {
    ++loads;
    return std::nullopt;
  };
  EXPECT_EQ(cache.get_or_compute("k", missing), std::nullopt);
  this->clock_->advance(std::chrono::seconds(4));
  EXPECT_EQ(cache.get_or_compute("k", missing), std::nullopt);
  EXPECT_EQ(loads, 1) << "the empty result was not cached";
  this->clock_->advance(std::chrono::seconds(2));
  EXPECT_EQ(cache.get_or_compute("k", [&]() -> MaybeInt { return ++loads; }), 2)
      << "the empty result outlived negative_ttl";
  this->clock_->advance(std::chrono::seconds(29));
  EXPECT_EQ(cache.get_or_compute("k", missing), 2) << "a value must live ttl, not negative_ttl";
}

TYPED_TEST_P(CacheNegativeCaching, ZeroNegativeTtlDoesNotStoreAnEmptyResult) {
  stampede::Cache<MaybeInt> cache(this->negative(std::chrono::milliseconds(0)),
                                  this->template backend<MaybeInt>());
  int loads = 0;
  auto missing = [&]() -> MaybeInt {
    ++loads;
    return std::nullopt;
  };
  EXPECT_EQ(cache.get_or_compute("k", missing), std::nullopt);
  EXPECT_EQ(cache.get("k"), std::nullopt) << "an empty result was stored with negative_ttl 0";
  EXPECT_EQ(cache.get_or_compute("k", missing), std::nullopt);
  EXPECT_EQ(loads, 2);
}

TYPED_TEST_P(CacheNegativeCaching, EmptyResultIsCoalesced) {
  constexpr int kCallers = 16;
  stampede::Cache<MaybeInt> cache(this->negative(std::chrono::seconds(5)),
                                  this->template backend<MaybeInt>());
  std::atomic<int> loads{0};
  stampede_test::Gate release;
  auto missing = [&]() -> MaybeInt {
    loads.fetch_add(1);
    EXPECT_TRUE(release.wait_for());
    return std::nullopt;
  };
  std::vector<std::future<MaybeInt>> got;
  {
    stampede_test::OpenOnExit unblock(release);
    for (int i = 0; i < kCallers; ++i) {
      got.push_back(std::async(std::launch::async, [&] { return cache.get_or_compute("k", missing); }));
    }
    ASSERT_TRUE(stampede_test::eventually([&] { return cache.stats().misses >= kCallers; }));
  }
  for (auto& f : got) EXPECT_EQ(f.get(), std::nullopt);
  EXPECT_EQ(loads.load(), 1);
}

TYPED_TEST_P(CacheNegativeCaching, EmptyResultIsFenced) {
  // An invalidate() while the empty result loads: the result is refused by the store.
  stampede::Cache<MaybeInt> cache(this->negative(std::chrono::seconds(5)),
                                  this->template backend<MaybeInt>());
  stampede_test::Gate loading, release;
  auto missing = [&]() -> MaybeInt {
    loading.open();
    EXPECT_TRUE(release.wait_for());
    return std::nullopt;
  };
  stampede_test::OpenOnExit unblock(release);
  auto leader = std::async(std::launch::async, [&] { return cache.get_or_compute("k", missing); });
  ASSERT_TRUE(loading.wait_for());
  cache.invalidate("k");  // the row was just created
  release.open();
  EXPECT_EQ(leader.get(), std::nullopt) << "the caller still gets what it loaded";
  EXPECT_EQ(cache.stats().stale_writes_rejected, 1u);
  EXPECT_EQ(cache.get_or_compute("k", [] { return MaybeInt(9); }), 9) << "the old empty result was stored";
}

// Negative caching x fail-safe: an empty result that is not stored (negative_ttl 0) left the value
// it replaced as "last good", so the next failed load served the deleted row again.
TYPED_TEST_P(CacheNegativeCaching, AnEmptyResultNotStoredStillRemovesTheValueFailSafeWouldServe) {
  stampede::CacheOptions o = this->negative(std::chrono::milliseconds(0));
  o.fail_safe_max_age = std::chrono::minutes(10);
  stampede::Cache<MaybeInt> cache(o, this->template backend<MaybeInt>());
  ASSERT_EQ(cache.get_or_compute("k", [] { return MaybeInt(5); }), 5);
  this->clock_->advance(std::chrono::seconds(31));  // expired: 5 is the last good value
  EXPECT_EQ(cache.get_or_compute("k", []() -> MaybeInt { return std::nullopt; }), std::nullopt);  // deleted
  auto failing = []() -> MaybeInt { throw ConformanceLoadError("db down"); };
  EXPECT_THROW((void)cache.get_or_compute("k", failing), ConformanceLoadError) << "the deleted row came back";
  EXPECT_EQ(cache.get("k"), std::nullopt);
  EXPECT_EQ(cache.stats().fail_safe_served, 0u);
}

// Negative caching x loader timeouts: the same value came back as the "old value" of a soft timeout.
TYPED_TEST_P(CacheNegativeCaching, AnEmptyResultNotStoredStillRemovesTheOldValueOfASoftTimeout) {
  stampede::CacheOptions o = this->negative(std::chrono::milliseconds(0));
  o.loader_soft_timeout = std::chrono::milliseconds(20);
  o.loader_hard_timeout = std::chrono::milliseconds(40);
  stampede::Cache<MaybeInt> cache(o, this->template backend<MaybeInt>());
  cache.put("k", MaybeInt(5));
  this->clock_->advance(std::chrono::seconds(31));  // expired; the store still holds it
  // Runs in the background; its callers return once it has stored (here: removed) its result.
  EXPECT_EQ(cache.get_or_compute("k", []() -> MaybeInt { return std::nullopt; }), std::nullopt);
  stampede_test::Gate release;
  stampede_test::OpenOnExit unblock(release);
  auto slow = [&]() -> MaybeInt {
    EXPECT_TRUE(release.wait_for());
    return 6;
  };
  EXPECT_THROW((void)cache.get_or_compute("k", slow), stampede::timeout_error)
      << "nothing old may be served: the row was deleted";
  EXPECT_EQ(cache.stats().soft_timeouts, 0u);
}

REGISTER_TYPED_TEST_SUITE_P(CacheNegativeCaching, EmptyResultLivesNegativeTtl,
                            ZeroNegativeTtlDoesNotStoreAnEmptyResult, EmptyResultIsCoalesced,
                            EmptyResultIsFenced, AnEmptyResultNotStoredStillRemovesTheValueFailSafeWouldServe,
                            AnEmptyResultNotStoredStillRemovesTheOldValueOfASoftTimeout);
