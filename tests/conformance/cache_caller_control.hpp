// tests/conformance/cache_caller_control.hpp: what one caller controls about its call and what a
// loader controls about its load: a per-call wait timeout, a stop token that ends one caller's wait
// (cancelled_error, no second load, the others keep waiting), the loader's stop token (requested
// once every caller gave up) and the entry's TTL set from the loader's LoadContext.
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

#include "conformance/cache_fixture.hpp"
#include "stampede/cache.hpp"
#include "stampede/call.hpp"
#include "stampede/clock.hpp"
#include "stampede/errors.hpp"
#include "stampede/options.hpp"
#include "support/test_support.hpp"

template <class Factory>
class CacheCallerControl : public CacheConformanceFixture<Factory> {
 protected:
  /// @return true if `f` is ready within the hang guard (never a timing assertion).
  template <class F>
  static bool ready(F& f) {
    return f.wait_for(stampede_test::kHangGuard) == std::future_status::ready;
  }
};

TYPED_TEST_SUITE_P(CacheCallerControl);

TYPED_TEST_P(CacheCallerControl, StopEndsOneWaiterAtOnceTheOthersGetTheOneLoad) {
  stampede::Cache<int> cache(this->options(), this->backend());
  std::atomic<int> loads{0};
  stampede_test::Gate loading, release;
  auto loader = [&] {
    loads.fetch_add(1);
    loading.open();
    EXPECT_TRUE(release.wait_for());
    return 7;
  };
  stampede_test::OpenOnExit unblock(release);
  auto leader = std::async(std::launch::async, [&] { return cache.get_or_compute("k", loader); });
  ASSERT_TRUE(loading.wait_for()) << "the loader never ran";
  std::stop_source cancel;
  auto quitter = std::async(std::launch::async, [&] {
    return cache.get_or_compute("k", loader, {.wait_timeout = {}, .stop = cancel.get_token()});
  });
  auto stayer = std::async(std::launch::async, [&] { return cache.get_or_compute("k", loader); });
  ASSERT_TRUE(stampede_test::eventually([&] { return cache.stats().misses >= 3; }));
  cancel.request_stop();
  // The load is still blocked: the quitter can only be ready because its wait ended.
  ASSERT_TRUE(this->ready(quitter)) << "a stop request did not end the wait";
  EXPECT_THROW((void)quitter.get(), stampede::cancelled_error);
  release.open();
  EXPECT_EQ(stayer.get(), 7) << "the other waiter did not keep waiting for the load";
  EXPECT_EQ(leader.get(), 7);
  EXPECT_EQ(cache.get_or_compute("k", loader), 7) << "the key is stuck";
  EXPECT_EQ(loads.load(), 1) << "a stop request caused a second load";
  EXPECT_EQ(cache.stats().cancelled, 1u);
}

TYPED_TEST_P(CacheCallerControl, LoaderStopTokenFiresOnlyWhenEveryCallerGaveUp) {
  stampede::Cache<int> cache(this->options(), this->backend());
  std::atomic<int> loads{0};
  std::stop_token load_stop;  // written by the loader before `loading` opens
  stampede_test::Gate loading, release;
  auto loader = [&](stampede::LoadContext& ctx) -> int {
    if (loads.fetch_add(1) > 0) return 2;  // a later, fresh load
    load_stop = ctx.stop_token();
    loading.open();
    EXPECT_TRUE(stampede_test::eventually([&] { return ctx.stop_token().stop_requested(); }));
    EXPECT_TRUE(release.wait_for());
    throw ConformanceLoadError("nobody wants this load any more");
  };
  stampede_test::OpenOnExit unblock(release);
  std::stop_source leader_stop, waiter_stop;
  auto leader = std::async(std::launch::async, [&] {
    return cache.get_or_compute("k", loader, {.wait_timeout = {}, .stop = leader_stop.get_token()});
  });
  ASSERT_TRUE(loading.wait_for()) << "the loader never ran";
  auto waiter = std::async(std::launch::async, [&] {
    return cache.get_or_compute("k", loader, {.wait_timeout = {}, .stop = waiter_stop.get_token()});
  });
  ASSERT_TRUE(stampede_test::eventually([&] { return cache.stats().misses >= 2; }));
  waiter_stop.request_stop();
  ASSERT_TRUE(this->ready(waiter));
  EXPECT_THROW((void)waiter.get(), stampede::cancelled_error);
  EXPECT_FALSE(load_stop.stop_requested()) << "the leader still wants the load";
  leader_stop.request_stop();  // the leader is in its loader: its interest goes at once
  EXPECT_TRUE(load_stop.stop_requested()) << "every caller gave up, but the loader was not told";
  release.open();
  EXPECT_THROW((void)leader.get(), ConformanceLoadError) << "the leader gets what its loader threw";
  EXPECT_EQ(cache.get_or_compute("k", loader), 2) << "the key is stuck after an abandoned load";
}

TYPED_TEST_P(CacheCallerControl, CallWaitTimeoutOverridesTheCaches) {
  stampede::CacheOptions o = this->options();  // waits 10 minutes
  o.on_wait_timeout = stampede::OnWaitTimeout::throw_error;
  stampede::Cache<int> cache(o, this->backend());
  stampede_test::Gate loading, release;
  auto loader = [&] {
    loading.open();
    EXPECT_TRUE(release.wait_for());
    return 7;
  };
  stampede_test::OpenOnExit unblock(release);
  auto leader = std::async(std::launch::async, [&] { return cache.get_or_compute("k", loader); });
  ASSERT_TRUE(loading.wait_for()) << "the loader never ran";
  EXPECT_THROW(
      (void)cache.get_or_compute("k", loader, {.wait_timeout = std::chrono::milliseconds(20), .stop = {}}),
      stampede::timeout_error);
  EXPECT_EQ(cache.stats().wait_timeouts, 1u);
  release.open();
  EXPECT_EQ(leader.get(), 7);
  EXPECT_THROW(
      (void)cache.get_or_compute("k", loader, {.wait_timeout = std::chrono::milliseconds(-1), .stop = {}}),
      std::invalid_argument);
}

TYPED_TEST_P(CacheCallerControl, StoppedLeaderWaitingForAnotherProcessHandsItsWaitersOn) {
  // Another process holds the lock; this process's leader waits for it and is stopped: it leaves
  // with cancelled_error, and its waiter goes on waiting (as a new leader) for the other's value.
  stampede::Backend<int> backend = this->backend();
  stampede::Cache<int> cache(this->options(), backend);
  stampede::Cache<int> other_process(this->options(), backend);
  auto other = backend.lock->try_acquire("k", std::chrono::hours(1));
  ASSERT_TRUE(other);
  std::atomic<int> loads{0};
  auto loader = [&] { return 100 + loads.fetch_add(1); };
  std::stop_source cancel;
  auto leader = std::async(std::launch::async, [&] {
    return cache.get_or_compute("k", loader, {.wait_timeout = {}, .stop = cancel.get_token()});
  });
  ASSERT_TRUE(stampede_test::eventually([&] { return cache.stats().lock_contended >= 1; }));
  auto waiter = std::async(std::launch::async, [&] { return cache.get_or_compute("k", loader); });
  ASSERT_TRUE(stampede_test::eventually([&] { return cache.stats().misses >= 2; }));
  cancel.request_stop();
  ASSERT_TRUE(this->ready(leader));
  EXPECT_THROW((void)leader.get(), stampede::cancelled_error);
  other_process.put("k", 5);  // the other process's value
  EXPECT_TRUE(backend.lock->release("k", other->token));
  ASSERT_TRUE(this->ready(waiter)) << "the waiter was left behind by its stopped leader";
  EXPECT_EQ(waiter.get(), 5);
  EXPECT_EQ(loads.load(), 0);
}

TYPED_TEST_P(CacheCallerControl, LoaderSetsItsEntrysTtl) {
  stampede::Cache<int> cache(this->options(), this->backend());  // ttl 30 s
  int loads = 0;
  auto loader = [&](stampede::LoadContext& ctx) {
    ctx.set_ttl(std::chrono::seconds(5));  // e.g. the origin's Cache-Control: max-age=5
    return ++loads;
  };
  EXPECT_EQ(cache.get_or_compute("k", loader), 1);
  this->clock_->advance(std::chrono::seconds(4));
  EXPECT_EQ(cache.get_or_compute("k", loader), 1) << "expired before the loader's TTL";
  this->clock_->advance(std::chrono::seconds(2));
  EXPECT_EQ(cache.get("k"), std::nullopt) << "the loader's TTL was ignored";
  EXPECT_EQ(cache.get_or_compute("k", loader), 2);
  EXPECT_THROW(stampede::LoadContext().set_ttl(std::chrono::milliseconds(0)), std::invalid_argument);
}

TYPED_TEST_P(CacheCallerControl, ZeroArgumentAndContextLoadersBothWork) {
  stampede::Cache<int> cache(this->options(), this->backend());
  EXPECT_EQ(cache.get_or_compute("a", [] { return 1; }), 1);
  EXPECT_EQ(cache.get_or_compute("b", [](stampede::LoadContext&) { return 2; }), 2);
  EXPECT_EQ(cache.get_or_compute("c", [] { return 3; }, {}), 3);
}

REGISTER_TYPED_TEST_SUITE_P(CacheCallerControl, StopEndsOneWaiterAtOnceTheOthersGetTheOneLoad,
                            LoaderStopTokenFiresOnlyWhenEveryCallerGaveUp, CallWaitTimeoutOverridesTheCaches,
                            StoppedLeaderWaitingForAnotherProcessHandsItsWaitersOn, LoaderSetsItsEntrysTtl,
                            ZeroArgumentAndContextLoadersBothWork);
