// The embedded backend measures lifetimes on a monotonic clock: stepping the wall clock (NTP, an
// operator, a VM restored from a snapshot) neither keeps entries and locks past their TTL nor
// expires them early.
//
// This executable defines clock_gettime itself. A definition in the executable takes precedence
// over libc's (and over the sanitizer runtimes' interceptors) for every caller in the process:
// std::chrono::system_clock, the library's clocks, the C library's callers through the PLT. It
// asks the kernel for the real time (syscall, no vDSO) and adds a test-controlled offset:
//   - wall_offset to CLOCK_REALTIME and CLOCK_REALTIME_COARSE: the wall clock steps;
//   - coarse_monotonic_offset to CLOCK_MONOTONIC_COARSE only: lets a test age entries by 31 s
//     without sleeping. CLOCK_MONOTONIC (std::chrono::steady_clock, which every blocking wait of
//     the library and of the test uses) is left alone, so no wait is lengthened or shortened.
#include <gtest/gtest.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>

#include "stampede/cache.hpp"
#include "stampede/clock.hpp"
#include "stampede/memory/backend.hpp"
#include "support/instances.hpp"  // Cache<int>, Cache<std::string>, ...: compiled once

namespace {

std::atomic<std::int64_t> wall_offset_ns{0};
std::atomic<std::int64_t> coarse_monotonic_offset_ns{0};
std::atomic<std::uint64_t> interposed_calls{0};

void add_ns(timespec* ts, std::int64_t ns) {
  constexpr std::int64_t kNsPerS = 1'000'000'000;
  std::int64_t total = static_cast<std::int64_t>(ts->tv_nsec) + ns % kNsPerS;
  std::int64_t sec = static_cast<std::int64_t>(ts->tv_sec) + ns / kNsPerS;
  if (total < 0) {
    total += kNsPerS;
    --sec;
  } else if (total >= kNsPerS) {
    total -= kNsPerS;
    ++sec;
  }
  ts->tv_sec = static_cast<time_t>(sec);
  ts->tv_nsec = static_cast<long>(total);
}

/// The kernel's time, untouched by the offsets.
timespec real_time(clockid_t id) {
  timespec ts{};
  ::syscall(SYS_clock_gettime, id, &ts);
  return ts;
}

std::chrono::nanoseconds as_duration(const timespec& ts) {
  return std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec);
}

}  // namespace

extern "C" int clock_gettime(clockid_t id, timespec* ts) noexcept {
  if (::syscall(SYS_clock_gettime, id, ts) != 0) return -1;  // errno set by syscall()
  interposed_calls.fetch_add(1, std::memory_order_relaxed);
  if (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE) {
    add_ns(ts, wall_offset_ns.load(std::memory_order_relaxed));
  } else if (id == CLOCK_MONOTONIC_COARSE) {
    add_ns(ts, coarse_monotonic_offset_ns.load(std::memory_order_relaxed));
  }
  return 0;
}

namespace {

using namespace std::chrono_literals;
using stampede::Cache;

/// Steps the process's wall clock by `d` for its lifetime.
class WallClockStep {
 public:
  explicit WallClockStep(std::chrono::nanoseconds d) { wall_offset_ns.fetch_add(d.count()); }
  ~WallClockStep() { wall_offset_ns.store(0); }
  WallClockStep(const WallClockStep&) = delete;
  WallClockStep& operator=(const WallClockStep&) = delete;
};

/// Moves CLOCK_MONOTONIC_COARSE (only) forward by `d` for its lifetime.
class CoarseMonotonicAdvance {
 public:
  explicit CoarseMonotonicAdvance(std::chrono::nanoseconds d) {
    coarse_monotonic_offset_ns.fetch_add(d.count());
  }
  ~CoarseMonotonicAdvance() { coarse_monotonic_offset_ns.store(0); }
  CoarseMonotonicAdvance(const CoarseMonotonicAdvance&) = delete;
  CoarseMonotonicAdvance& operator=(const CoarseMonotonicAdvance&) = delete;
};

TEST(WallClockStepTest, TheStepReachesStdChronoAndTheLibrarysClocks) {
  const std::uint64_t calls = interposed_calls.load();
  WallClockStep back(-1h);
  const auto real = as_duration(real_time(CLOCK_REALTIME));
  const auto behind = [&](std::chrono::system_clock::time_point t) { return real - t.time_since_epoch(); };
  EXPECT_NEAR(std::chrono::duration<double>(behind(std::chrono::system_clock::now())).count(), 3600.0, 60.0);
  EXPECT_NEAR(std::chrono::duration<double>(behind(stampede::SystemClock().now())).count(), 3600.0, 60.0);
  EXPECT_NEAR(std::chrono::duration<double>(behind(stampede::system_clock()->now())).count(), 3600.0, 60.0);
  EXPECT_GE(interposed_calls.load(), calls + 3) << "clock_gettime is not interposed";
  {
    CoarseMonotonicAdvance ahead(31s);
    const auto mono = as_duration(real_time(CLOCK_MONOTONIC_COARSE));
    const auto seen = stampede::monotonic_clock()->now().time_since_epoch();
    EXPECT_NEAR(std::chrono::duration<double>(seen - mono).count(), 31.0, 5.0);
  }
}

TEST(WallClockStepTest, EntryExpiresAfterItsTtlWhenTheWallClockStepsBack) {
  Cache<int> cache({.ttl = 30s});  // the default backend
  stampede::Backend<int> backend = stampede::memory_backend<int>();
  Cache<int> over(stampede::CacheOptions{.ttl = 30s}, backend);  // memory_backend() given
  ASSERT_EQ(cache.get_or_compute("k", [] { return 1; }), 1);
  ASSERT_EQ(over.get_or_compute("k", [] { return 1; }), 1);
  WallClockStep back(-1h);
  EXPECT_EQ(cache.get("k"), 1);
  EXPECT_EQ(over.get("k"), 1);
  CoarseMonotonicAdvance aged(31s);
  EXPECT_EQ(cache.get("k"), std::nullopt) << "an entry outlived its 30 s TTL by the wall clock's step";
  EXPECT_EQ(over.get("k"), std::nullopt) << "an entry outlived its 30 s TTL by the wall clock's step";
  EXPECT_EQ(cache.get_or_compute("k", [] { return 2; }), 2);
}

TEST(WallClockStepTest, EntriesAndLocksSurviveAWallClockStepForward) {
  Cache<int> cache({.ttl = 30s});
  stampede::Backend<int> backend = stampede::memory_backend<int>();
  Cache<int> over(stampede::CacheOptions{.ttl = 30s}, backend);
  stampede::MemoryTokenLock lock;
  ASSERT_EQ(cache.get_or_compute("k", [] { return 1; }), 1);
  ASSERT_EQ(over.get_or_compute("k", [] { return 1; }), 1);
  auto job = lock.try_acquire("job", 30s);
  auto load = backend.lock->try_acquire("load", 30s);
  ASSERT_TRUE(job);
  ASSERT_TRUE(load);
  WallClockStep forward(1h);
  EXPECT_EQ(cache.get("k"), 1) << "a wall clock step expired an entry";
  EXPECT_EQ(over.get("k"), 1) << "a wall clock step expired an entry";
  EXPECT_FALSE(lock.try_acquire("job", 30s)) << "a wall clock step expired a held lock";
  EXPECT_FALSE(backend.lock->try_acquire("load", 30s)) << "a wall clock step expired a held lock";
  EXPECT_TRUE(lock.renew("job", job->token, 30s));
  EXPECT_TRUE(lock.release("job", job->token));
  EXPECT_TRUE(backend.lock->release("load", load->token));
}

TEST(WallClockStepTest, LockExpiresAfterItsTtlWhenTheWallClockStepsBack) {
  stampede::MemoryTokenLock lock;
  auto job = lock.try_acquire("job", 30s);
  ASSERT_TRUE(job);
  WallClockStep back(-1h);
  EXPECT_FALSE(lock.try_acquire("job", 30s));
  CoarseMonotonicAdvance aged(31s);
  EXPECT_TRUE(lock.try_acquire("job", 30s)) << "a lock outlived its 30 s TTL by the wall clock's step";
}

}  // namespace
