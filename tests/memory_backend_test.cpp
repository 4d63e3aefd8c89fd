// The embedded backend (MemoryStore + MemoryTokenLock) under pressure that the conformance suite
// does not apply: fences across eviction, memory reclaimed after many distinct keys, fork().
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <future>
#include <latch>
#include <memory>
#include <string>
#include <thread>

#include "stampede/cache.hpp"
#include "stampede/clock.hpp"
#include "stampede/detail/sanitizers.hpp"
#include "stampede/memory/backend.hpp"
#include "support/instances.hpp"  // Cache<int>, Cache<std::string>, ...: compiled once
#include "support/test_support.hpp"

namespace {

using namespace std::chrono_literals;
using stampede::Cache;
using stampede::Entry;
using stampede::PutResult;

Entry<int> entry(int value, std::uint64_t fence, stampede::Clock::time_point expiry) {
  return {.value = value, .soft_expiry = expiry, .hard_expiry = expiry, .fence = fence};
}

// ---- fences across eviction -----------------------------------------------------------------------

TEST(MemoryStoreFenceTest, WriteOfAnOlderLoadIsRefusedAfterItsKeyWasEvicted) {
  const auto now = stampede::ManualClock().now();
  stampede::MemoryStore<int> store(1);
  stampede::MemoryTokenLock lock;
  auto older = lock.try_acquire("k", 1h);  // a load of "k" starts
  ASSERT_TRUE(older);
  const std::uint64_t newer = lock.bump_fence("k");  // put("k") while it runs
  ASSERT_EQ(store.put("k", entry(2, newer, now + 1h), now), PutResult::stored);
  ASSERT_EQ(store.put("x", entry(0, lock.bump_fence("x"), now + 1h), now), PutResult::stored);
  ASSERT_EQ(store.get("k", now), std::nullopt) << "capacity 1: the insert of x evicts k";
  EXPECT_EQ(store.put("k", entry(1, older->fence, now + 1h), now), PutResult::stale_fence)
      << "the load that started before put(k) overwrote it once k was evicted";
  EXPECT_EQ(store.get("k", now), std::nullopt);
}

TEST(MemoryStoreFenceTest, CacheLoadOlderThanAPutCannotStoreAfterEviction) {
  auto clock = std::make_shared<stampede::ManualClock>();
  stampede::Backend<int> backend = stampede::memory_backend<int>(1, clock);
  Cache<int> cache({.clock = clock}, backend);
  stampede_test::Gate release_load;
  std::latch loading(1);
  auto old_load = std::async(std::launch::async, [&] {
    return cache.get_or_compute("k", [&] {
      loading.count_down();
      release_load.wait();
      return 1;
    });
  });
  stampede_test::OpenOnExit open_on_exit(release_load);
  loading.wait();
  cache.put("k", 2);  // newer than the load in flight
  cache.put("x", 0);  // capacity 1: evicts k
  ASSERT_EQ(cache.get("k"), std::nullopt);
  release_load.open();
  ASSERT_EQ(old_load.wait_for(stampede_test::kHangGuard), std::future_status::ready);
  EXPECT_EQ(old_load.get(), 1) << "the caller still gets the value it loaded";
  EXPECT_EQ(cache.get("k"), std::nullopt) << "the older load's value was stored over the newer put";
  EXPECT_EQ(cache.stats().stale_writes_rejected, 1u);
}

TEST(MemoryStoreFenceTest, InvalidateOfAnAbsentKeyStillBeatsALoadInFlight) {
  const auto now = stampede::ManualClock().now();
  stampede::MemoryStore<int> store;
  stampede::MemoryTokenLock lock;
  auto load = lock.try_acquire("k", 1h);
  ASSERT_TRUE(load);
  store.invalidate("k", lock.bump_fence("k"));
  EXPECT_EQ(store.put("k", entry(1, load->fence, now + 1h), now), PutResult::stale_fence);
  // A load that starts after the invalidation stores normally.
  auto next = lock.try_acquire("k2", 1h);
  ASSERT_TRUE(next);
  EXPECT_EQ(store.put("k", entry(3, lock.bump_fence("k"), now + 1h), now), PutResult::stored);
  EXPECT_EQ(store.get("k", now)->value, 3);
}

// ---- memory reclaimed --------------------------------------------------------------------------------

TEST(MemoryReclaimTest, ExpiredKeysAndLocksAreReclaimedAfterTheGracePeriod) {
  constexpr int kKeys = 200'000;
  constexpr int kHot = 64;  // the ordinary traffic afterwards: writes of these keys
  constexpr int kTrafficWrites = 200'000;
  constexpr std::size_t kBound = 4096;  // what may be left: independent of kKeys
  auto clock = std::make_shared<stampede::ManualClock>();
  stampede::MemoryStore<int> store;
  stampede::MemoryTokenLock lock(clock);
  auto now = clock->now();
  for (int i = 0; i < kKeys; ++i) {
    const std::string key = "cold:" + std::to_string(i);
    // A lock that is never released (its holder lost it) and an entry.
    ASSERT_TRUE(lock.try_acquire(key, 30s));
    ASSERT_EQ(store.put(key, entry(i, lock.bump_fence(key), now + 30s), now), PutResult::stored);
    if (i % 4 == 0) store.invalidate(key, lock.bump_fence(key));
  }
  ASSERT_GE(store.size(), static_cast<std::size_t>(kKeys / 2));
  clock->advance(30s + stampede::MemoryStore<int>::kDefaultGrace + 1s);
  now = clock->now();
  for (int i = 0; i < kTrafficWrites; ++i) {
    const std::string key = "hot:" + std::to_string(i % kHot);
    auto token = lock.try_acquire(key, 30s);
    ASSERT_TRUE(token);
    ASSERT_EQ(store.put(key, entry(i, token->fence, now + 30s), now), PutResult::stored);
    ASSERT_TRUE(lock.release(key, token->token));
  }
  EXPECT_LE(store.size(), kBound) << "expired entries of " << kKeys << " keys are still held";
  EXPECT_LE(lock.tracked_keys(), kBound) << "expired locks of " << kKeys << " keys are still held";
  for (int i = 0; i < kHot; ++i) EXPECT_TRUE(store.get("hot:" + std::to_string(i), now));
}

TEST(MemoryReclaimTest, ExpiredEntryStaysServableStaleDuringTheGracePeriod) {
  auto clock = std::make_shared<stampede::ManualClock>();
  stampede::Backend<int> backend = stampede::memory_backend<int>(0, clock);
  Cache<int> cache({.ttl = 10s,
                    .wait_timeout = 20ms,
                    .on_wait_timeout = stampede::OnWaitTimeout::serve_stale,
                    .clock = clock},
                   backend);
  ASSERT_EQ(cache.get_or_compute("k", [] { return 1; }), 1);
  clock->advance(10s + stampede::MemoryStore<int>::kDefaultGrace / 2);
  // Traffic on other keys sweeps: k is expired but within its grace period, so it stays.
  for (int i = 0; i < 10'000; ++i) cache.put("other:" + std::to_string(i % 16), i);
  auto held = backend.lock->try_acquire("k", 1h);
  ASSERT_TRUE(held);
  EXPECT_EQ(cache.get_or_compute("k", [] { return 2; }), 1) << "the stale value was not served";
  EXPECT_TRUE(backend.lock->release("k", held->token));
}

// ---- fork() -----------------------------------------------------------------------------------------

/// A value whose copy blocks while `armed` and the source holds kBlocking: lets a test stop a
/// thread inside MemoryStore::put, which copies the entry under its shard's exclusive lock.
struct Blocking {
  static constexpr int kBlocking = -1;
  static inline std::atomic<bool> armed{false};
  static inline stampede_test::Gate* inside = nullptr;   // opened by the blocked copy
  static inline stampede_test::Gate* release = nullptr;  // the blocked copy waits for it

  int v = 0;
  Blocking() = default;
  explicit Blocking(int value) : v(value) {}
  Blocking(Blocking&& o) noexcept : v(o.v) {}
  Blocking& operator=(Blocking&& o) noexcept {
    v = o.v;
    return *this;
  }
  Blocking(const Blocking& o) : v(o.v) { maybe_block(); }
  Blocking& operator=(const Blocking& o) {
    v = o.v;
    maybe_block();
    return *this;
  }
  void maybe_block() const {
    if (v == kBlocking && armed.load()) {
      inside->open();
      release->wait();
    }
  }
};

TEST(MemoryForkTest, ChildStartsWithNoHoldersAndAUsableStore) {
#ifdef STAMPEDE_TSAN
  GTEST_SKIP() << "ThreadSanitizer does not support starting threads after a multi-threaded fork";
#endif
  const std::string key = "k";
  stampede::Backend<Blocking> backend = stampede::memory_backend<Blocking>();
  Cache<Blocking> cache({.ttl = 1h, .wait_timeout = 50ms}, backend);
  ASSERT_EQ(cache.get_or_compute("warm", [] { return Blocking(5); }).v, 5);

  // A parent thread holds the lock on `key`, and another is inside a write to key's shard.
  auto held = backend.lock->try_acquire(key, 1h);
  ASSERT_TRUE(held);
  stampede_test::Gate inside, release;
  Blocking::inside = &inside;
  Blocking::release = &release;
  Blocking::armed = true;
  std::jthread writer([&] {
    const auto now = stampede::Clock::time_point{};  // the parent never reads this entry
    Entry<Blocking> e;
    e.value = Blocking(Blocking::kBlocking);
    e.soft_expiry = e.hard_expiry = now + 1h;
    e.fence = backend.lock->bump_fence(key);
    (void)backend.store->put(key, e, now);
  });
  stampede_test::OpenOnExit open_on_exit(release);
  ASSERT_TRUE(inside.wait_for());

  std::fflush(nullptr);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    Blocking::armed = false;
    int status = 0;
    auto mine = backend.lock->try_acquire(key, 1h);
    if (!mine) {
      status = 1;  // the parent thread's lock survived into the child
    } else if (mine->fence <= held->fence) {
      status = 2;  // fences went backwards
    } else if (!backend.lock->release(key, mine->token)) {
      status = 3;
    } else if (cache.get_or_compute(key, [] { return Blocking(7); }).v != 7) {
      status = 4;
    } else if (!cache.get(key) || cache.get(key)->v != 7) {
      status = 5;  // loaded but not stored
    }
    ::_exit(status);  // no gtest teardown, no static destructors in the child
  }
  const std::optional<int> status = stampede_test::reap_child(pid);
  release.open();
  writer.join();
  Blocking::armed = false;
  ASSERT_TRUE(status.has_value()) << "the child hung (a lock or shard mutex held at fork time)";
  ASSERT_TRUE(WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 0);
  // The parent is unaffected: its lock is still held, and the write finished.
  EXPECT_FALSE(backend.lock->try_acquire(key, 1h));
  EXPECT_TRUE(backend.lock->release(key, held->token));
}

}  // namespace
