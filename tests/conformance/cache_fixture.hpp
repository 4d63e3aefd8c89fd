// tests/conformance/cache_fixture.hpp: what the typed Cache<T> conformance suites share: the
// factory a backend provides, the fixture every topic derives from and the loaders' exception.
//
// The suites, one header per topic, each its own TYPED_TEST_SUITE_P (so ctest names say the topic):
//   cache_lookup.hpp      hits, misses, get/put/invalidate, expiry, stats and events
//   cache_coalescing.hpp  one load per flight, in one process and across "processes"
//   cache_timeouts.hpp    the wait-timeout policies and the fallback load they share
//   cache_swr.hpp         stale-while-revalidate, background refreshes, early refresh
//   cache_fencing.hpp     fenced writes: invalidate/put beat a load in flight, expired holders lose
//   cache_failures.hpp    loader, codec, store and event hook failures
//   cache_caller_control.hpp  per-call wait timeout and stop token, the loader's LoadContext
//   cache_negative_caching.hpp  Cache<std::optional<U>>: empty results live negative_ttl
//   cache_loader_timeouts.hpp  loader soft/hard timeouts, the load finishing in the background
//   cache_fail_safe.hpp   the last good value on a failed load, re-armed for the throttle
// stampede_conformance_sources (tests/CMakeLists.txt) instantiates them for a backend in
// STAMPEDE_CONFORMANCE_UNITS generated translation units (3 by default), which compile in parallel.
//
// How to add a backend: write a factory type in a header, and add the sources that instantiate every
// topic with it to your test binary.
//
//   struct MyFactory {
//     // A backend over a keyspace no other test shares (e.g. a unique key prefix per call). A test
//     // that simulates two processes builds two Caches over one returned Backend (copies share it).
//     template <class T> static stampede::Backend<T> backend(std::shared_ptr<const stampede::Clock> clock);
//     static std::shared_ptr<stampede::TokenLock> lock(std::shared_ptr<const stampede::Clock> clock);
//     static constexpr bool kClockDrivesLockExpiry = false;  // true if lock expiry follows `clock`
//   };
//   # CMake: ctest names become My/CacheLookup/0.PutStoresAndInvalidateRemoves, My/CacheSwr/0...
//   stampede_conformance_sources(my_sources My "my/factory.hpp" my::MyFactory)
//   target_sources(my_test PRIVATE ${my_sources})
//
// How to add a test: put it in the header of its topic and name it in that header's
// REGISTER_TYPED_TEST_SUITE_P list; every backend runs it. A new topic gets its own header
// (cache_<topic>.hpp) and an entry in STAMPEDE_CONFORMANCE_TOPICS (tests/CMakeLists.txt).
//
// Entry expiry is checked against the `now` a Cache passes to Store::get (a ManualClock here, which
// starts at the real time); a store must honour it even when its server also expires keys in real
// time. Lock expiry may be the server's real time: tests that need an expired lock look at
// kClockDrivesLockExpiry. Nothing here asserts how long anything took; waits have a hang guard.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <stdexcept>

#include "stampede/backend.hpp"
#include "stampede/cache.hpp"
#include "stampede/clock.hpp"
#include "stampede/options.hpp"
#include "support/instances.hpp"  // Cache<int>, Cache<std::string>, ...: compiled once

/// What the loaders of the suites throw; carries which load it was.
struct ConformanceLoadError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// The base of every Cache conformance topic: a manual clock and the options the tests start from.
/// Thread-compatible (a test's threads only read it).
template <class Factory>
class CacheConformanceFixture : public ::testing::Test {
 protected:
  std::shared_ptr<stampede::ManualClock> clock_ =
      std::make_shared<stampede::ManualClock>(std::chrono::system_clock::now());

  /// @return a fresh backend of the factory, over a keyspace of its own, on the test clock.
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
};
