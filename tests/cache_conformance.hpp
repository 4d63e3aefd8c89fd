// tests/cache_conformance.hpp: the behaviours Cache<T> must have on every backend, as a typed suite.
//
// How to add a backend: write a factory type and instantiate the suite with it in your test file.
//
//   struct MyFactory {
//     // A backend over a keyspace no other test shares (e.g. a unique key prefix per call). A test
//     // that simulates two processes builds two Caches over one returned Backend (copies share it).
//     template <class T> static stampede::Backend<T> backend(std::shared_ptr<const stampede::Clock> clock);
//     static std::shared_ptr<stampede::TokenLock> lock(std::shared_ptr<const stampede::Clock> clock);
//     static constexpr bool kClockDrivesLockExpiry = false;  // true if lock expiry follows `clock`
//   };
//   INSTANTIATE_TYPED_TEST_SUITE_P(My, CacheConformance, MyFactory);
//
// Entry expiry is checked against the `now` a Cache passes to Store::get (a ManualClock here, which
// starts at the real time); a store must honour it even when its server also expires keys in real
// time. Lock expiry may be the server's real time: tests that need an expired lock look at
// kClockDrivesLockExpiry. Nothing here asserts how long anything took; waits have a hang guard.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <latch>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "stampede/cache.hpp"
#include "stampede/clock.hpp"
#include "stampede/errors.hpp"
#include "stampede/events.hpp"
#include "stampede/json.hpp"
#include "support/test_support.hpp"

/// What the loaders of this suite throw; carries which load it was.
struct ConformanceLoadError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// A Store<T> that forwards to another, except that put() calls `fail` first (which throws, or
/// returns to let the write through). Thread-safe once built.
template <class T>
class FailingPutStore final : public stampede::Store<T> {
 public:
  FailingPutStore(std::shared_ptr<stampede::Store<T>> inner, std::function<void()> fail)
      : inner_(std::move(inner)), fail_(std::move(fail)) {}
  std::optional<stampede::Entry<T>> get(std::string_view key,
                                        std::chrono::system_clock::time_point now) override {
    return inner_->get(key, now);
  }
  stampede::PutResult put(std::string_view key, const stampede::Entry<T>& entry,
                          std::chrono::system_clock::time_point now) override {
    fail_();
    return inner_->put(key, entry, now);
  }
  void invalidate(std::string_view key, std::uint64_t fence) override { inner_->invalidate(key, fence); }
  void add_counters(stampede::BackendCounters& counters) const override { inner_->add_counters(counters); }

 private:
  std::shared_ptr<stampede::Store<T>> inner_;
  std::function<void()> fail_;
};

template <class Factory>
class CacheConformance : public ::testing::Test {
 protected:
  std::shared_ptr<stampede::ManualClock> clock_ =
      std::make_shared<stampede::ManualClock>(std::chrono::system_clock::now());

  template <class T = int>
  stampede::Backend<T> backend() {
    return Factory::template backend<T>(clock_);
  }

  /// Blocking mode on the manual clock. Callers wait for each other's loads far longer than any
  /// test runs; tests of the wait-timeout policies shorten it.
  stampede::CacheOptions options() const {
    stampede::CacheOptions o;
    o.clock = clock_;
    o.ttl = std::chrono::seconds(30);
    o.wait_timeout = std::chrono::minutes(10);
    o.poll_interval = std::chrono::milliseconds(10);
    return o;
  }
  /// Stale-while-revalidate: fresh for 10 s, then stale for 10 s.
  stampede::CacheOptions swr_options() const {
    stampede::CacheOptions o = options();
    o.mode = stampede::Mode::stale_while_revalidate;
    o.soft_ttl = std::chrono::seconds(10);
    o.swr_window = std::chrono::seconds(10);
    return o;
  }
  /// Options for a caller that meets a lock held by someone else: gives up after 50 ms.
  stampede::CacheOptions impatient(stampede::OnWaitTimeout policy) const {
    stampede::CacheOptions o = options();
    o.wait_timeout = std::chrono::milliseconds(50);
    o.on_wait_timeout = policy;
    return o;
  }

  /// "Update the row, invalidate (or put), read your own write": a load of "k" reads the row and
  /// is held right after; the row changes and `update(cache)` runs; a caller that starts after
  /// that must get the new row, not the held load's value. The held load is released only once
  /// the new caller has started a flight of its own (it then finds the held load's lock).
  void expect_a_later_caller_to_read_the_new_row(const std::function<void(stampede::Cache<int>&)>& update) {
    stampede::CacheOptions o = options();
    o.lock_ttl = std::chrono::hours(1);  // the held load keeps its lock whatever the test clock does
    stampede::Cache<int> cache(o, backend());
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

  /// The leader's store write fails with what `fail` throws: every caller still gets the loaded
  /// value; the failure is counted (store_failures) and reported (store_failed, with its text).
  void expect_every_caller_to_get_the_value_when_the_store_fails(stampede::CacheOptions o,
                                                                 std::function<void()> fail,
                                                                 const std::string& why) {
    constexpr int kCallers = 8;
    stampede::Backend<int> inner = backend();
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
    auto store = std::make_shared<FailingPutStore<int>>(inner.store, [&, fail] {
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

TYPED_TEST_SUITE_P(CacheConformance);

TYPED_TEST_P(CacheConformance, ThousandCallersOnAColdKeyShareOneLoad) {
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

TYPED_TEST_P(CacheConformance, ManyKeysAtOnceLoadOncePerKey) {
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

TYPED_TEST_P(CacheConformance, LoaderExceptionReachesEveryWaiterAndNothingIsStored) {
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

TYPED_TEST_P(CacheConformance, WaitTimeoutComputeRunsTheLoaderWithoutStoring) {
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

TYPED_TEST_P(CacheConformance, WaitTimeoutComputeWaitersOfASlowLoadShareOneFallbackLoad) {
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

TYPED_TEST_P(CacheConformance, WaitTimeoutComputeLeaderAndWaitersShareOneFallbackLoad) {
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

TYPED_TEST_P(CacheConformance, WaitTimeoutThrowErrorThrowsTimeoutError) {
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

TYPED_TEST_P(CacheConformance, WaitTimeoutServeStaleServesAnExpiredValue) {
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

TYPED_TEST_P(CacheConformance, WaitTimeoutServeStaleWithNothingToServeThrowsTimeoutError) {
  stampede::Backend<int> backend = this->backend();
  stampede::Cache<int> cache(this->impatient(stampede::OnWaitTimeout::serve_stale), backend);
  auto other = backend.lock->try_acquire("k", std::chrono::hours(1));
  ASSERT_TRUE(other);
  int loads = 0;
  EXPECT_THROW((void)cache.get_or_compute("k", [&] { return ++loads; }), stampede::timeout_error);
  EXPECT_EQ(loads, 0);
  EXPECT_TRUE(backend.lock->release("k", other->token));
}

TYPED_TEST_P(CacheConformance, ValueStoredWhileTheLeaderWaitsForTheLockIsUsed) {
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

TYPED_TEST_P(CacheConformance, DoubleCheckUnderTheLockUsesAValueStoredAfterTheFirstMiss) {
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

TYPED_TEST_P(CacheConformance, SecondCacheOnTheSameBackendWaitsForTheFirstOnesLoad) {
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

TYPED_TEST_P(CacheConformance, InvalidateDuringALoadKeepsThatLoadsValueOut) {
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

TYPED_TEST_P(CacheConformance, PutDuringALoadWins) {
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

TYPED_TEST_P(CacheConformance, CallerAfterInvalidateNeverGetsALoadThatStartedBeforeIt) {
  this->expect_a_later_caller_to_read_the_new_row([](stampede::Cache<int>& cache) { cache.invalidate("k"); });
}

TYPED_TEST_P(CacheConformance, CallerAfterPutNeverGetsALoadThatStartedBeforeIt) {
  this->expect_a_later_caller_to_read_the_new_row([this](stampede::Cache<int>& cache) {
    cache.put("k", 2);
    this->clock_->advance(std::chrono::seconds(31));  // the put's entry expires: the caller misses
  });
}

TYPED_TEST_P(CacheConformance, StoreRejectsAWriteWithALowerFence) {
  stampede::Backend<int> backend = this->backend();
  const auto now = this->clock_->now();
  const auto later = now + std::chrono::seconds(30);
  stampede::Store<int>& store = *backend.store;
  EXPECT_EQ(store.put("k", {.value = 2, .soft_expiry = later, .hard_expiry = later, .fence = 5}, now),
            stampede::PutResult::stored);
  EXPECT_EQ(store.put("k", {.value = 1, .soft_expiry = later, .hard_expiry = later, .fence = 3}, now),
            stampede::PutResult::stale_fence);
  ASSERT_TRUE(store.get("k", now));
  EXPECT_EQ(store.get("k", now)->value, 2);
  EXPECT_EQ(store.get("k", now)->fence, 5u);
  // An invalidation's fence is remembered too.
  store.invalidate("k", 10);
  EXPECT_EQ(store.get("k", now), std::nullopt);
  EXPECT_EQ(store.put("k", {.value = 3, .soft_expiry = later, .hard_expiry = later, .fence = 7}, now),
            stampede::PutResult::stale_fence);
  EXPECT_EQ(store.get("k", now), std::nullopt);
  EXPECT_EQ(store.put("k", {.value = 4, .soft_expiry = later, .hard_expiry = later, .fence = 11}, now),
            stampede::PutResult::stored);
  ASSERT_TRUE(store.get("k", now));
  EXPECT_EQ(store.get("k", now)->value, 4);
}

TYPED_TEST_P(CacheConformance, SlowLoaderWhoseLockExpiredCannotOverwriteANewerValue) {
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

TYPED_TEST_P(CacheConformance, BlockingEntryExpiresAfterItsTtl) {
  stampede::Cache<int> cache(this->options(), this->backend());
  int loads = 0;
  auto loader = [&] { return ++loads; };
  EXPECT_EQ(cache.get_or_compute("k", loader), 1);
  this->clock_->advance(std::chrono::seconds(29));
  EXPECT_EQ(cache.get_or_compute("k", loader), 1);
  this->clock_->advance(std::chrono::seconds(2));
  EXPECT_EQ(cache.get("k"), std::nullopt);
  EXPECT_EQ(cache.get_or_compute("k", loader), 2);
  EXPECT_EQ(loads, 2);
}

TYPED_TEST_P(CacheConformance, PutStoresAndInvalidateRemoves) {
  stampede::Cache<int> cache(this->options(), this->backend());
  cache.put("k", 5);
  EXPECT_EQ(cache.get("k"), 5);
  int loads = 0;
  EXPECT_EQ(cache.get_or_compute("k", [&] { return ++loads; }), 5);
  EXPECT_EQ(loads, 0);
  cache.put("k", 6);
  EXPECT_EQ(cache.get("k"), 6);
  cache.invalidate("k");
  EXPECT_EQ(cache.get("k"), std::nullopt);
  EXPECT_EQ(cache.get_or_compute("k", [&] { return ++loads; }), 1);
  cache.invalidate("never-stored");
  EXPECT_EQ(cache.get("never-stored"), std::nullopt);
}

TYPED_TEST_P(CacheConformance, KeysAndStringValuesAreBinarySafe) {
  stampede::Cache<std::string> cache(this->options(), this->template backend<std::string>());
  const std::string nul_key("a b\n\0c", 6);
  const std::string prefix_key("a b\n", 4);
  const std::string value("x\0y\r\n\"{}", 8);
  EXPECT_EQ(cache.get_or_compute(nul_key, [&] { return value; }), value);
  EXPECT_EQ(cache.get(prefix_key), std::nullopt) << "the key was cut at its NUL";
  EXPECT_EQ(cache.get(nul_key), value);
  cache.put(prefix_key, "other");
  EXPECT_EQ(cache.get(nul_key), value);
  EXPECT_EQ(cache.get(prefix_key), "other");
}

TYPED_TEST_P(CacheConformance, EmptyKeyIsRejected) {
  stampede::Cache<int> cache(this->options(), this->backend());
  int loads = 0;
  EXPECT_THROW((void)cache.get_or_compute("", [&] { return ++loads; }), std::invalid_argument);
  EXPECT_THROW((void)cache.get(""), std::invalid_argument);
  EXPECT_THROW(cache.put("", 1), std::invalid_argument);
  EXPECT_THROW(cache.invalidate(""), std::invalid_argument);
  EXPECT_EQ(loads, 0);
}

// ---- stale-while-revalidate ---------------------------------------------------------------------

TYPED_TEST_P(CacheConformance, SwrServesStaleAtOnceWhileTheRefreshIsBlocked) {
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

TYPED_TEST_P(CacheConformance, SwrManyConcurrentStaleHitsRefreshOnce) {
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

TYPED_TEST_P(CacheConformance, SwrFailedRefreshKeepsTheStaleValueUntilHardExpiry) {
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

TYPED_TEST_P(CacheConformance, SwrCallAfterHardExpiryIsAMiss) {
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

TYPED_TEST_P(CacheConformance, DestroyingACacheWaitsForItsRunningRefreshAndDropsQueuedOnes) {
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

TYPED_TEST_P(CacheConformance, FullRefreshQueueDropsAndCounts) {
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

// ---- expiry spreading and early refresh ---------------------------------------------------------

TYPED_TEST_P(CacheConformance, TtlJitterSpreadsExpiriesWithinBounds) {
  constexpr int kKeys = 200;
  stampede::Backend<int> backend = this->backend();
  stampede::CacheOptions o = this->options();
  o.ttl = std::chrono::seconds(100);
  o.ttl_jitter = 0.5;
  stampede::Cache<int> cache(o, backend);
  stampede::CacheOptions plain = this->options();
  plain.ttl = std::chrono::seconds(100);
  stampede::Cache<int> unjittered(plain, backend);
  const auto now = this->clock_->now();
  const auto tolerance = std::chrono::milliseconds(1);  // a store may keep expiries in whole ms
  auto lowest = std::chrono::system_clock::duration::max();
  auto highest = std::chrono::system_clock::duration::min();
  for (int i = 0; i < kKeys; ++i) {
    const std::string key = "j" + std::to_string(i);
    ASSERT_EQ(cache.get_or_compute(key, [] { return 1; }), 1);
    auto e = backend.store->get(key, now);
    ASSERT_TRUE(e);
    const auto ttl = e->hard_expiry - now;
    EXPECT_GT(ttl, std::chrono::seconds(50) - tolerance) << key;
    EXPECT_LE(ttl, std::chrono::seconds(100) + tolerance) << key;
    lowest = std::min(lowest, ttl);
    highest = std::max(highest, ttl);

    const std::string plain_key = "p" + std::to_string(i);
    ASSERT_EQ(unjittered.get_or_compute(plain_key, [] { return 1; }), 1);
    auto p = backend.store->get(plain_key, now);
    ASSERT_TRUE(p);
    EXPECT_LE(p->hard_expiry - now, std::chrono::seconds(100) + tolerance);
    EXPECT_GE(p->hard_expiry - now, std::chrono::seconds(100) - tolerance)
        << "ttl_jitter = 0 moved an expiry";
  }
  // 200 draws from a 50 s range all within 10 s of each other: probability below 1e-130.
  EXPECT_GT(highest - lowest, std::chrono::seconds(10)) << "expiries were not spread";
}

TYPED_TEST_P(CacheConformance, EarlyRefreshBetaRefreshesAFreshEntryInTheBackground) {
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

TYPED_TEST_P(CacheConformance, EarlyRefreshOffNeverRefreshesAFreshEntry) {
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

// ---- store failures -----------------------------------------------------------------------------

TYPED_TEST_P(CacheConformance, EncodeErrorOnTheLeadersStoreGivesEveryCallerTheValue) {
  this->expect_every_caller_to_get_the_value_when_the_store_fails(
      this->options(), [] { throw stampede::codec_error("cannot encode this value"); },
      "cannot encode this value");
}

TYPED_TEST_P(CacheConformance, FailClosedBackendErrorOnTheLeadersStoreGivesEveryCallerTheValue) {
  stampede::CacheOptions o = this->options();
  o.backend_failure = stampede::BackendFailure::fail_closed;
  this->expect_every_caller_to_get_the_value_when_the_store_fails(
      o, [] { throw stampede::backend_error("the store write failed"); }, "the store write failed");
}

// ---- stats and events ---------------------------------------------------------------------------

TYPED_TEST_P(CacheConformance, StatsCountWhatHappened) {
  stampede::Cache<int> cache(this->options(), this->backend());
  EXPECT_EQ(cache.get_or_compute("k",
                                 [] {
                                   std::this_thread::sleep_for(std::chrono::milliseconds(2));
                                   return 1;
                                 }),
            1);                                                // miss, load, lock
  EXPECT_EQ(cache.get_or_compute("k", [] { return -1; }), 1);  // hit
  EXPECT_EQ(cache.get("k"), 1);                                // hit
  EXPECT_EQ(cache.get("absent"), std::nullopt);                // miss
  EXPECT_THROW((void)cache.get_or_compute("bad", []() -> int { throw ConformanceLoadError("x"); }),
               ConformanceLoadError);  // miss, load, failure, lock
  const stampede::Stats st = cache.stats();
  EXPECT_EQ(st.hits, 2u);
  EXPECT_EQ(st.misses, 3u);
  EXPECT_EQ(st.loads, 2u);
  EXPECT_EQ(st.load_failures, 1u);
  EXPECT_GE(st.load_time, std::chrono::milliseconds(2));
  EXPECT_EQ(st.lock_acquired, 2u);
  EXPECT_EQ(st.lock_contended, 0u);
  EXPECT_EQ(st.coalesced, 0u);
  EXPECT_EQ(st.wait_timeouts, 0u);
  EXPECT_EQ(st.stale_hits, 0u);
  EXPECT_EQ(st.stale_writes_rejected, 0u);
  EXPECT_EQ(st.backend_errors, 0u);
  EXPECT_EQ(stampede::to_json(st)["hits"], 2u);
  EXPECT_EQ(stampede::to_json(st)["load_failures"], 1u);
}

TYPED_TEST_P(CacheConformance, EventHookSeesLoadsFailuresAndTimeouts) {
  stampede::Backend<int> backend = this->backend();
  std::mutex mu;
  std::vector<std::pair<stampede::EventType, std::string>> events;
  stampede::CacheOptions o = this->impatient(stampede::OnWaitTimeout::throw_error);
  o.on_event = [&](const stampede::Event& e) {
    std::lock_guard lock(mu);
    events.emplace_back(e.type, std::string(e.key));
  };
  stampede::Cache<int> cache(o, backend);
  ASSERT_EQ(cache.get_or_compute("ok", [] { return 1; }), 1);
  EXPECT_THROW((void)cache.get_or_compute("bad", []() -> int { throw ConformanceLoadError("boom"); }),
               ConformanceLoadError);
  auto other = backend.lock->try_acquire("held", std::chrono::hours(1));
  ASSERT_TRUE(other);
  EXPECT_THROW((void)cache.get_or_compute("held", [] { return 1; }), stampede::timeout_error);
  EXPECT_TRUE(backend.lock->release("held", other->token));

  std::lock_guard lock(mu);
  auto has = [&](stampede::EventType type, const std::string& key) {
    return std::find(events.begin(), events.end(), std::make_pair(type, key)) != events.end();
  };
  EXPECT_TRUE(has(stampede::EventType::lock_acquired, "ok"));
  EXPECT_TRUE(has(stampede::EventType::load_done, "ok"));
  EXPECT_TRUE(has(stampede::EventType::load_failed, "bad"));
  EXPECT_TRUE(has(stampede::EventType::lock_timeout, "held"));
  EXPECT_FALSE(has(stampede::EventType::load_done, "held"));
}

TYPED_TEST_P(CacheConformance, ThrowingEventHookChangesNothing) {
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

REGISTER_TYPED_TEST_SUITE_P(
    CacheConformance, ThousandCallersOnAColdKeyShareOneLoad, ManyKeysAtOnceLoadOncePerKey,
    LoaderExceptionReachesEveryWaiterAndNothingIsStored, WaitTimeoutComputeRunsTheLoaderWithoutStoring,
    WaitTimeoutComputeWaitersOfASlowLoadShareOneFallbackLoad,
    WaitTimeoutComputeLeaderAndWaitersShareOneFallbackLoad, WaitTimeoutThrowErrorThrowsTimeoutError,
    WaitTimeoutServeStaleServesAnExpiredValue, WaitTimeoutServeStaleWithNothingToServeThrowsTimeoutError,
    ValueStoredWhileTheLeaderWaitsForTheLockIsUsed, DoubleCheckUnderTheLockUsesAValueStoredAfterTheFirstMiss,
    SecondCacheOnTheSameBackendWaitsForTheFirstOnesLoad, InvalidateDuringALoadKeepsThatLoadsValueOut,
    PutDuringALoadWins, CallerAfterInvalidateNeverGetsALoadThatStartedBeforeIt,
    CallerAfterPutNeverGetsALoadThatStartedBeforeIt, StoreRejectsAWriteWithALowerFence,
    SlowLoaderWhoseLockExpiredCannotOverwriteANewerValue, BlockingEntryExpiresAfterItsTtl,
    PutStoresAndInvalidateRemoves, KeysAndStringValuesAreBinarySafe, EmptyKeyIsRejected,
    SwrServesStaleAtOnceWhileTheRefreshIsBlocked, SwrManyConcurrentStaleHitsRefreshOnce,
    SwrFailedRefreshKeepsTheStaleValueUntilHardExpiry, SwrCallAfterHardExpiryIsAMiss,
    DestroyingACacheWaitsForItsRunningRefreshAndDropsQueuedOnes, FullRefreshQueueDropsAndCounts,
    TtlJitterSpreadsExpiriesWithinBounds, EarlyRefreshBetaRefreshesAFreshEntryInTheBackground,
    EarlyRefreshOffNeverRefreshesAFreshEntry, EncodeErrorOnTheLeadersStoreGivesEveryCallerTheValue,
    FailClosedBackendErrorOnTheLeadersStoreGivesEveryCallerTheValue, StatsCountWhatHappened,
    EventHookSeesLoadsFailuresAndTimeouts, ThrowingEventHookChangesNothing);
