// tests/conformance/cache_failures.hpp: failures on every backend: a loader's exception reaches
// every waiter of its flight, nothing is stored and the lock is released at once; a failed store
// write (a codec_error, or a backend_error under fail_closed) still gives every caller the loaded
// value and is counted and reported; an event hook that throws changes nothing.
//
// A backend runs this suite through stampede_conformance_sources (tests/CMakeLists.txt); its
// factory is described in cache_fixture.hpp. A new test goes here and into the
// REGISTER_TYPED_TEST_SUITE_P list at the end.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <latch>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "conformance/cache_fixture.hpp"
#include "stampede/cache.hpp"
#include "stampede/clock.hpp"
#include "stampede/errors.hpp"
#include "stampede/events.hpp"
#include "stampede/json.hpp"
#include "stampede/options.hpp"
#include "stampede/store.hpp"
#include "support/put_hook_store.hpp"
#include "support/test_support.hpp"

template <class Factory>
class CacheFailures : public CacheConformanceFixture<Factory> {
 protected:
  /// The leader's store write fails with what `fail` throws: every caller still gets the loaded
  /// value; the failure is counted (store_failures) and reported (store_failed, with its text).
  void expect_every_caller_to_get_the_value_when_the_store_fails(stampede::CacheOptions o,
                                                                 std::function<void()> fail,
                                                                 const std::string& why) {
    constexpr int kCallers = 8;
    stampede::Backend<int> inner = this->backend();
    std::mutex mu;
    std::vector<std::string> store_failed;
    o.on_event = [&](const stampede::Event& e) {
      std::lock_guard lock(mu);
      if (e.type == stampede::EventType::store_failed) store_failed.emplace_back(e.detail);
    };
    stampede::Cache<int>* cache_ptr = nullptr;
    // The write fails only once every waiter has been served (they get the value as soon as it is
    // loaded): the flight stays in the table until the leader's write returns, so every caller
    // that missed has joined it.
    auto store = std::make_shared<stampede_test::PutHookStore<int>>(inner.store, [&, fail] {
      EXPECT_TRUE(stampede_test::eventually([&] { return cache_ptr->stats().coalesced >= kCallers - 1; }));
      fail();
    });
    stampede::Cache<int> cache(o, {store, inner.lock, inner.name});
    cache_ptr = &cache;
    std::latch start(kCallers);
    std::atomic<int> loads{0};
    auto loader = [&] {
      EXPECT_TRUE(stampede_test::eventually([&] { return cache.stats().misses >= kCallers; }));
      loads.fetch_add(1);
      return 42;
    };
    std::vector<std::string> got(kCallers);
    {
      std::vector<std::jthread> threads;
      for (int i = 0; i < kCallers; ++i) {
        threads.emplace_back([&, i] {
          start.arrive_and_wait();
          try {
            got[i] = std::to_string(cache.get_or_compute("k", loader));
          } catch (const std::exception& e) {
            got[i] = std::string("exception: ") + e.what();
          }
        });
      }
    }
    EXPECT_EQ(loads.load(), 1);
    for (int i = 0; i < kCallers; ++i) EXPECT_EQ(got[i], "42") << "caller " << i;
    EXPECT_EQ(cache.stats().store_failures, 1u);
    EXPECT_EQ(stampede::to_json(cache.stats())["store_failures"], 1u);
    std::lock_guard lock(mu);
    ASSERT_EQ(store_failed.size(), 1u) << "the failed store was not reported";
    EXPECT_NE(store_failed[0].find(why), std::string::npos) << store_failed[0];
  }
};

TYPED_TEST_SUITE_P(CacheFailures);

TYPED_TEST_P(CacheFailures, LoaderExceptionReachesEveryWaiterAndNothingIsStored) {
  constexpr int kCallers = 50;
  stampede::Backend<int> backend = this->backend();
  stampede::Cache<int> cache(this->options(), backend);
  std::latch start(kCallers);
  std::latch entered(kCallers);
  std::atomic<int> loads{0};
  auto failing = [&]() -> int {
    const int n = loads.fetch_add(1) + 1;
    entered.wait();
    EXPECT_TRUE(stampede_test::eventually([&] { return cache.stats().misses >= kCallers; }));
    // A simulated slow failure: lets every caller that has missed reach the flight.
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    throw ConformanceLoadError("load #" + std::to_string(n));
  };
  std::vector<std::string> seen(kCallers);
  // Every caller rethrows the one exception object. Its reference count lives in libstdc++, which
  // TSan cannot see, so the last owner's delete would look racy against the others' what():
  // nobody leaves its handler (drops its reference) until all have read it.
  std::latch all_read(kCallers);
  std::vector<std::thread> threads;
  for (int i = 0; i < kCallers; ++i) {
    threads.emplace_back([&, i] {
      start.arrive_and_wait();
      entered.count_down();
      try {
        (void)cache.get_or_compute("k", failing);
        seen[i] = "no exception";
        all_read.arrive_and_wait();
      } catch (const ConformanceLoadError& e) {
        seen[i] = e.what();
        all_read.arrive_and_wait();
      } catch (const std::exception& e) {
        seen[i] = std::string("other exception: ") + e.what();
        all_read.arrive_and_wait();
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(loads.load(), 1);
  for (int i = 0; i < kCallers; ++i) EXPECT_EQ(seen[i], "load #1") << "caller " << i;
  EXPECT_EQ(cache.stats().load_failures, 1u);
  EXPECT_EQ(cache.get("k"), std::nullopt) << "a failed load stored something";
  // The lock was released at once, not left to expire.
  auto token = backend.lock->try_acquire("k", std::chrono::seconds(1));
  ASSERT_TRUE(token) << "the failed leader still holds the lock";
  ASSERT_TRUE(backend.lock->release("k", token->token));
  // The next call loads again.
  EXPECT_EQ(cache.get_or_compute("k",
                                 [&] {
                                   loads.fetch_add(1);
                                   return 7;
                                 }),
            7);
  EXPECT_EQ(loads.load(), 2);
  EXPECT_EQ(cache.get("k"), 7);
}

TYPED_TEST_P(CacheFailures, EncodeErrorOnTheLeadersStoreGivesEveryCallerTheValue) {
  this->expect_every_caller_to_get_the_value_when_the_store_fails(
      this->options(), [] { throw stampede::codec_error("cannot encode this value"); },
      "cannot encode this value");
}

TYPED_TEST_P(CacheFailures, FailClosedBackendErrorOnTheLeadersStoreGivesEveryCallerTheValue) {
  stampede::CacheOptions o = this->options();
  o.backend_failure = stampede::BackendFailure::fail_closed;
  this->expect_every_caller_to_get_the_value_when_the_store_fails(
      o, [] { throw stampede::backend_error("the store write failed"); }, "the store write failed");
}

TYPED_TEST_P(CacheFailures, ThrowingEventHookChangesNothing) {
  std::atomic<int> calls{0};
  stampede::CacheOptions o = this->options();
  o.on_event = [&](const stampede::Event&) {
    calls.fetch_add(1);
    throw std::runtime_error("a broken logger");
  };
  stampede::Cache<int> cache(o, this->backend());
  EXPECT_EQ(cache.get_or_compute("k", [] { return 1; }), 1);
  EXPECT_EQ(cache.get_or_compute("k", [] { return -1; }), 1);
  EXPECT_THROW((void)cache.get_or_compute("bad", []() -> int { throw ConformanceLoadError("boom"); }),
               ConformanceLoadError);
  cache.put("p", 3);
  EXPECT_EQ(cache.get("p"), 3);
  EXPECT_GT(calls.load(), 0);
  const stampede::Stats st = cache.stats();
  EXPECT_EQ(st.loads, 2u);
  EXPECT_EQ(st.hits, 2u);
  EXPECT_EQ(st.load_failures, 1u);
}

REGISTER_TYPED_TEST_SUITE_P(CacheFailures, LoaderExceptionReachesEveryWaiterAndNothingIsStored,
                            EncodeErrorOnTheLeadersStoreGivesEveryCallerTheValue,
                            FailClosedBackendErrorOnTheLeadersStoreGivesEveryCallerTheValue,
                            ThrowingEventHookChangesNothing);
