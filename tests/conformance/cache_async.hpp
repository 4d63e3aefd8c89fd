// tests/conformance/cache_async.hpp: asynchronous callers (stampede/asio.hpp) on every backend:
// lookup, coalescing of async-only and of mixed sync + async callers of one key, across
// "processes" (a second Cache over the same backend: on Redis its waiters are woken by the other
// Cache's load), wait timeouts, cancellation, SWR, fencing, loader failures and fail-safe.
//
// Completions run on Asio's system executor (asio::use_future) unless a test names an io_context.
// Built only when the build has stampede::asio (STAMPEDE_CONFORMANCE_TOPICS, tests/CMakeLists.txt).
// A new test goes here and into the REGISTER_TYPED_TEST_SUITE_P list at the end.
#pragma once

#include <gtest/gtest.h>

#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/use_future.hpp>
#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "conformance/cache_fixture.hpp"
#include "stampede/asio.hpp"
#include "stampede/cache.hpp"
#include "stampede/errors.hpp"
#include "stampede/options.hpp"
#include "support/test_support.hpp"

template <class Factory>
class CacheAsync : public CacheConformanceFixture<Factory> {
 protected:
  /// @return what `f` completed with: its value, or the message of its exception prefixed "!".
  static std::string outcome(std::future<int>& f) {
    if (f.wait_for(stampede_test::kHangGuard) != std::future_status::ready) return "!hung";
    try {
      return std::to_string(f.get());
    } catch (const std::exception& e) {
      return std::string("!") + e.what();
    }
  }
};

TYPED_TEST_SUITE_P(CacheAsync);

TYPED_TEST_P(CacheAsync, AMissLoadsOnceAndAHitServesTheStoredValue) {
  stampede::Cache<int> cache(this->options(), this->backend());
  std::atomic<int> loads{0};
  auto load = [&] { return ++loads, 11; };
  auto first = stampede::asio::async_get_or_compute(cache, "k", load, asio::use_future);
  EXPECT_EQ(this->outcome(first), "11");
  auto second = stampede::asio::async_get_or_compute(cache, "k", load, asio::use_future);
  EXPECT_EQ(this->outcome(second), "11");
  EXPECT_EQ(loads.load(), 1);
  EXPECT_EQ(cache.stats().hits, 1u);
  EXPECT_EQ(cache.get("k"), 11);
}

TYPED_TEST_P(CacheAsync, AsyncAndSyncCallersOfOneKeyShareOneLoad) {
  stampede::Cache<int> cache(this->options(), this->backend());
  stampede_test::Gate entered, release;
  stampede_test::OpenOnExit release_on_exit(release);
  std::atomic<int> loads{0};
  auto load = [&] {
    ++loads;
    entered.open();
    release.wait();
    return 21;
  };
  std::vector<std::future<int>> async_calls;
  async_calls.push_back(stampede::asio::async_get_or_compute(cache, "k", load, asio::use_future));
  ASSERT_TRUE(entered.wait_for());
  for (int i = 0; i < 20; ++i) {
    async_calls.push_back(stampede::asio::async_get_or_compute(cache, "k", load, asio::use_future));
  }
  auto sync_call = std::async(std::launch::async, [&] { return cache.get_or_compute("k", load); });
  // Every caller has joined the key's flight (a miss is counted as a caller joins).
  ASSERT_TRUE(stampede_test::eventually([&] { return cache.stats().misses == 22; }));
  release.open();
  for (auto& f : async_calls) EXPECT_EQ(this->outcome(f), "21");
  EXPECT_EQ(sync_call.get(), 21);
  EXPECT_EQ(loads.load(), 1);
}

// Two Caches over one backend stand for two processes: the async callers of the second wait for
// the first's lock and get the value it stored (on Redis: woken by its pub/sub message).
TYPED_TEST_P(CacheAsync, AsyncCallersInAnotherProcessGetTheHoldersValue) {
  stampede::Backend<int> backend = this->backend();
  stampede::Cache<int> holder(this->options(), backend);
  stampede::Cache<int> other(this->options(), backend);
  stampede_test::Gate entered, release;
  stampede_test::OpenOnExit release_on_exit(release);
  std::atomic<int> loads{0};
  auto held_load = [&] {
    ++loads;
    entered.open();
    release.wait();
    return 31;
  };
  auto holder_call = std::async(std::launch::async, [&] { return holder.get_or_compute("k", held_load); });
  ASSERT_TRUE(entered.wait_for());
  std::vector<std::future<int>> calls;
  for (int i = 0; i < 20; ++i) {
    calls.push_back(stampede::asio::async_get_or_compute(
        other, "k", [&] { return ++loads, -1; }, asio::use_future));
  }
  // The other process's leader meets the held lock.
  ASSERT_TRUE(stampede_test::eventually([&] { return other.stats().lock_contended >= 1; }));
  release.open();
  EXPECT_EQ(holder_call.get(), 31);
  for (auto& f : calls) EXPECT_EQ(this->outcome(f), "31");
  EXPECT_EQ(loads.load(), 1);
}

TYPED_TEST_P(CacheAsync, ALoadersErrorReachesEveryAsyncCallerAndNothingIsStored) {
  stampede::Cache<int> cache(this->options(), this->backend());
  stampede_test::Gate entered, release;
  stampede_test::OpenOnExit release_on_exit(release);
  auto load = [&]() -> int {
    entered.open();
    release.wait();
    throw ConformanceLoadError("row locked");
  };
  std::vector<std::future<int>> calls;
  calls.push_back(stampede::asio::async_get_or_compute(cache, "k", load, asio::use_future));
  ASSERT_TRUE(entered.wait_for());
  for (int i = 0; i < 5; ++i)
    calls.push_back(stampede::asio::async_get_or_compute(cache, "k", load, asio::use_future));
  release.open();
  for (auto& f : calls) EXPECT_EQ(this->outcome(f), "!row locked");
  EXPECT_EQ(cache.get("k"), std::nullopt);
  auto again = stampede::asio::async_get_or_compute(
      cache, "k", [] { return 1; }, asio::use_future);
  EXPECT_EQ(this->outcome(again), "1") << "the next call loads again";
}

// throw_error: an async waiter whose wait passes wait_timeout gets timeout_error (a timer, no
// thread), while the load goes on and is stored.
TYPED_TEST_P(CacheAsync, AWaiterPastWaitTimeoutGetsTimeoutErrorAndTheLoadIsStored) {
  stampede::Cache<int> cache(this->impatient(stampede::OnWaitTimeout::throw_error), this->backend());
  stampede_test::Gate entered, release;
  stampede_test::OpenOnExit release_on_exit(release);
  auto load = [&] {
    entered.open();
    release.wait();
    return 41;
  };
  auto leader = stampede::asio::async_get_or_compute(
      cache, "k", load, {.wait_timeout = std::chrono::minutes(10)}, asio::use_future);
  ASSERT_TRUE(entered.wait_for());
  auto waiter = stampede::asio::async_get_or_compute(cache, "k", load, asio::use_future);
  EXPECT_EQ(waiter.wait_for(stampede_test::kHangGuard), std::future_status::ready);
  EXPECT_THROW(waiter.get(), stampede::timeout_error);
  release.open();
  EXPECT_EQ(this->outcome(leader), "41");
  EXPECT_EQ(cache.get("k"), 41);
}

// A cancellation slot ends one waiter's call; the other waiter and the leader get the value, and
// the load is stored.
TYPED_TEST_P(CacheAsync, CancellingOneAsyncWaiterLeavesTheLoadToTheOthers) {
  stampede::Cache<int> cache(this->options(), this->backend());
  stampede_test::Gate entered, release;
  stampede_test::OpenOnExit release_on_exit(release);
  std::atomic<int> loads{0};
  auto load = [&] {
    ++loads;
    entered.open();
    release.wait();
    return 51;
  };
  auto leader = stampede::asio::async_get_or_compute(cache, "k", load, asio::use_future);
  ASSERT_TRUE(entered.wait_for());
  asio::cancellation_signal signal;
  auto cancelled = stampede::asio::async_get_or_compute(
      cache, "k", load, asio::bind_cancellation_slot(signal.slot(), asio::use_future));
  auto other = stampede::asio::async_get_or_compute(cache, "k", load, asio::use_future);
  signal.emit(asio::cancellation_type::terminal);
  EXPECT_EQ(cancelled.wait_for(stampede_test::kHangGuard), std::future_status::ready);
  EXPECT_THROW(cancelled.get(), stampede::cancelled_error);
  release.open();
  EXPECT_EQ(this->outcome(leader), "51");
  EXPECT_EQ(this->outcome(other), "51");
  EXPECT_EQ(loads.load(), 1);
  EXPECT_EQ(cache.get("k"), 51);
}

// SWR: a stale hit completes at once with the stale value and one refresh stores the new one.
TYPED_TEST_P(CacheAsync, AStaleHitCompletesAtOnceAndOneRefreshStores) {
  stampede::Cache<int> cache(this->swr_options(), this->backend());
  cache.put("k", 1);
  this->clock_->advance(std::chrono::seconds(15));  // stale, within the window
  std::atomic<int> refreshes{0};
  stampede_test::Gate release;
  stampede_test::OpenOnExit release_on_exit(release);
  auto load = [&] {
    ++refreshes;
    release.wait();  // the refresh stores only after every call completed
    return 2;
  };
  std::vector<std::future<int>> calls;
  for (int i = 0; i < 5; ++i) {
    calls.push_back(stampede::asio::async_get_or_compute(cache, "k", load, asio::use_future));
  }
  for (auto& f : calls) EXPECT_EQ(this->outcome(f), "1");
  release.open();
  cache.wait_idle();
  EXPECT_EQ(refreshes.load(), 1);
  EXPECT_EQ(cache.get("k"), 2);
}

// Fencing: an invalidate() while an async load runs keeps that load's value out of the store; a
// call that starts after it loads anew.
TYPED_TEST_P(CacheAsync, AnInvalidateDuringAnAsyncLoadKeepsItsValueOutOfTheStore) {
  stampede::Cache<int> cache(this->options(), this->backend());
  stampede_test::Gate entered, release;
  stampede_test::OpenOnExit release_on_exit(release);
  auto load = [&] {
    entered.open();
    release.wait();
    return 61;
  };
  auto old_call = stampede::asio::async_get_or_compute(cache, "k", load, asio::use_future);
  ASSERT_TRUE(entered.wait_for());
  cache.invalidate("k");
  release.open();
  EXPECT_EQ(this->outcome(old_call), "61") << "its caller still gets what it loaded";
  EXPECT_EQ(cache.get("k"), std::nullopt);
  EXPECT_GE(cache.stats().stale_writes_rejected, 1u);
  auto new_call = stampede::asio::async_get_or_compute(
      cache, "k", [] { return 62; }, asio::use_future);
  EXPECT_EQ(this->outcome(new_call), "62");
}

// Fail-safe: a failed load hands every async caller of it the last good value.
TYPED_TEST_P(CacheAsync, FailSafeServesTheLastGoodValueToAsyncCallers) {
  stampede::CacheOptions o = this->options();
  o.fail_safe_max_age = std::chrono::minutes(10);
  o.fail_safe_throttle = std::chrono::seconds(5);
  stampede::Cache<int> cache(o, this->backend());
  ASSERT_EQ(cache.get_or_compute("k", [] { return 71; }), 71);
  this->clock_->advance(std::chrono::seconds(31));  // expired, still held as the last good value
  stampede_test::Gate entered, release;
  stampede_test::OpenOnExit release_on_exit(release);
  auto failing = [&]() -> int {
    entered.open();
    release.wait();
    throw ConformanceLoadError("db down");
  };
  std::vector<std::future<int>> calls;
  calls.push_back(stampede::asio::async_get_or_compute(cache, "k", failing, asio::use_future));
  ASSERT_TRUE(entered.wait_for());
  for (int i = 0; i < 4; ++i)
    calls.push_back(stampede::asio::async_get_or_compute(cache, "k", failing, asio::use_future));
  release.open();
  for (auto& f : calls) EXPECT_EQ(this->outcome(f), "71");
  EXPECT_GE(cache.stats().fail_safe_served, 1u);
}

REGISTER_TYPED_TEST_SUITE_P(
    CacheAsync, AMissLoadsOnceAndAHitServesTheStoredValue, AsyncAndSyncCallersOfOneKeyShareOneLoad,
    AsyncCallersInAnotherProcessGetTheHoldersValue, ALoadersErrorReachesEveryAsyncCallerAndNothingIsStored,
    AWaiterPastWaitTimeoutGetsTimeoutErrorAndTheLoadIsStored,
    CancellingOneAsyncWaiterLeavesTheLoadToTheOthers, AStaleHitCompletesAtOnceAndOneRefreshStores,
    AnInvalidateDuringAnAsyncLoadKeepsItsValueOutOfTheStore, FailSafeServesTheLastGoodValueToAsyncCallers);
