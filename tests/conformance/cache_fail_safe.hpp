// tests/conformance/cache_fail_safe.hpp: fail-safe. When a load fails and the key's last good value
// is within fail_safe_max_age of its expiry, every caller gets that value instead of the error; the
// entry is re-armed in the store (under the failed load's fence) for fail_safe_throttle, during which
// nobody calls the loader, in this process or another; then one caller tries again.
//
// A backend runs this suite through stampede_conformance_sources (tests/CMakeLists.txt); its
// factory is described in cache_fixture.hpp. A new test goes here and into the
// REGISTER_TYPED_TEST_SUITE_P list at the end.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "conformance/cache_fixture.hpp"
#include "stampede/cache.hpp"
#include "stampede/clock.hpp"
#include "stampede/events.hpp"
#include "stampede/options.hpp"
#include "support/test_support.hpp"

template <class Factory>
class CacheFailSafe : public CacheConformanceFixture<Factory> {
 protected:
  /// Blocking, ttl 30 s; a last good value stays 10 minutes past expiry, re-armed for 5 s.
  stampede::CacheOptions fail_safe() const {
    stampede::CacheOptions o = this->options();
    o.fail_safe_max_age = std::chrono::minutes(10);
    o.fail_safe_throttle = std::chrono::seconds(5);
    return o;
  }
  /// A loader that counts its calls and throws while `down` is true, else returns `value`.
  struct Db {
    std::atomic<int> calls{0};
    std::atomic<bool> down{false};
    std::atomic<int> value{1};
    int operator()() {
      calls.fetch_add(1);
      if (down.load()) throw ConformanceLoadError("db down");
      return value.load();
    }
  };
};

TYPED_TEST_SUITE_P(CacheFailSafe);

TYPED_TEST_P(CacheFailSafe, ServesTheLastGoodValueWhenTheLoaderFails) {
  stampede::CacheOptions o = this->fail_safe();
  std::mutex mu;
  std::vector<std::string> events;
  o.on_event = [&](const stampede::Event& e) {
    if (e.type != stampede::EventType::fail_safe) return;
    std::lock_guard lock(mu);
    events.push_back(std::string(e.key) + " " + std::string(e.detail));
  };
  stampede::Cache<int> cache(o, this->backend());
  typename TestFixture::Db db;
  auto loader = [&db] { return db(); };
  ASSERT_EQ(cache.get_or_compute("k", loader), 1);
  this->clock_->advance(std::chrono::seconds(31));  // expired
  EXPECT_EQ(cache.get("k"), std::nullopt) << "an expired value is not served as fresh";
  db.down = true;
  EXPECT_EQ(cache.get_or_compute("k", loader), 1) << "the loader's error reached the caller";
  EXPECT_EQ(db.calls.load(), 2);
  EXPECT_EQ(cache.stats().fail_safe_served, 1u);
  std::lock_guard lock(mu);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0], "k db down");
}

TYPED_TEST_P(CacheFailSafe, ThrottlesRetriesThenRecovers) {
  stampede::Cache<int> cache(this->fail_safe(), this->backend());
  typename TestFixture::Db db;
  auto loader = [&db] { return db(); };
  ASSERT_EQ(cache.get_or_compute("k", loader), 1);
  this->clock_->advance(std::chrono::seconds(31));
  db.down = true;
  ASSERT_EQ(cache.get_or_compute("k", loader), 1);
  this->clock_->advance(std::chrono::seconds(4));  // within the throttle
  EXPECT_EQ(cache.get_or_compute("k", loader), 1);
  EXPECT_EQ(db.calls.load(), 2) << "the loader was called within fail_safe_throttle";
  this->clock_->advance(std::chrono::seconds(2));  // past it: one caller tries again
  EXPECT_EQ(cache.get_or_compute("k", loader), 1);
  EXPECT_EQ(db.calls.load(), 3);
  EXPECT_EQ(cache.stats().fail_safe_served, 2u);
  this->clock_->advance(std::chrono::seconds(6));
  db.down = false;
  db.value = 2;
  EXPECT_EQ(cache.get_or_compute("k", loader), 2) << "did not recover when the loader works again";
  EXPECT_EQ(cache.get("k"), 2);
}

TYPED_TEST_P(CacheFailSafe, NothingOlderThanMaxAgeIsServed) {
  stampede::Cache<int> cache(this->fail_safe(), this->backend());
  typename TestFixture::Db db;
  auto loader = [&db] { return db(); };
  ASSERT_EQ(cache.get_or_compute("k", loader), 1);
  this->clock_->advance(std::chrono::seconds(30) + std::chrono::minutes(10) + std::chrono::seconds(1));
  db.down = true;
  EXPECT_THROW((void)cache.get_or_compute("k", loader), ConformanceLoadError);
  EXPECT_EQ(cache.stats().fail_safe_served, 0u);
}

TYPED_TEST_P(CacheFailSafe, ReArmedEntryIsSharedWithAnotherProcess) {
  // Two Caches over one backend are two processes: the one whose load failed re-arms the entry in
  // the shared store, and the other serves it for the throttle without calling its loader.
  stampede::Backend<int> backend = this->backend();
  stampede::Cache<int> first(this->fail_safe(), backend);
  stampede::Cache<int> second(this->fail_safe(), backend);
  typename TestFixture::Db db;
  auto loader = [&db] { return db(); };
  ASSERT_EQ(first.get_or_compute("k", loader), 1);
  this->clock_->advance(std::chrono::seconds(31));
  db.down = true;
  ASSERT_EQ(first.get_or_compute("k", loader), 1);
  EXPECT_EQ(second.get_or_compute("k", loader), 1);
  EXPECT_EQ(db.calls.load(), 2) << "the other process called the loader within the throttle";
  EXPECT_EQ(second.stats().hits, 1u);
}

TYPED_TEST_P(CacheFailSafe, SwrRefreshFailureReArmsTheStaleValue) {
  stampede::CacheOptions o = this->swr_options();  // fresh 10 s, stale 10 s
  o.fail_safe_max_age = std::chrono::minutes(10);
  o.fail_safe_throttle = std::chrono::seconds(5);
  stampede::Cache<int> cache(o, this->backend());
  typename TestFixture::Db db;
  auto loader = [&db] { return db(); };
  ASSERT_EQ(cache.get_or_compute("k", loader), 1);
  db.down = true;
  this->clock_->advance(std::chrono::seconds(12));  // stale: a refresh runs and fails
  EXPECT_EQ(cache.get_or_compute("k", loader), 1);
  cache.wait_idle();
  EXPECT_EQ(db.calls.load(), 2);
  EXPECT_EQ(cache.stats().fail_safe_served, 1u);
  EXPECT_EQ(cache.get_or_compute("k", loader), 1);
  cache.wait_idle();
  EXPECT_EQ(db.calls.load(), 2) << "the re-armed value did not hold off the loader";
  this->clock_->advance(std::chrono::seconds(30));  // past the stale window: a miss, fail-safe
  EXPECT_EQ(cache.get_or_compute("k", loader), 1);
  EXPECT_EQ(db.calls.load(), 3);
}

TYPED_TEST_P(CacheFailSafe, BadOptionsAreRefused) {
  stampede::CacheOptions o = this->fail_safe();
  o.fail_safe_throttle = std::chrono::milliseconds(0);
  try {
    stampede::Cache<int> bad(o, this->backend());
    ADD_FAILURE() << "a zero fail_safe_throttle was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_TRUE(stampede_test::mentions_word(e.what(), "fail_safe_throttle")) << e.what();
  }
}

REGISTER_TYPED_TEST_SUITE_P(CacheFailSafe, ServesTheLastGoodValueWhenTheLoaderFails,
                            ThrottlesRetriesThenRecovers, NothingOlderThanMaxAgeIsServed,
                            ReArmedEntryIsSharedWithAnotherProcess, SwrRefreshFailureReArmsTheStaleValue,
                            BadOptionsAreRefused);
