// stampede/clock.hpp: injectable clocks for TTLs and staleness.
//
// Expiry times (TTL, soft TTL, lock expiry in the in-process backend) are read from a `Clock`,
// so tests move a `ManualClock` instead of sleeping. Which clock measures what:
//   - the embedded backend (memory_backend(), Cache without a backend or CacheOptions::clock):
//     monotonic_clock(), CLOCK_MONOTONIC_COARSE. Its time points only mean something inside this
//     process, which is all an in-process store and lock need; a wall clock stepped back (or
//     forward) neither keeps entries and locks past their TTL nor expires them early.
//   - the Redis backend: system_clock(), epoch time (CLOCK_REALTIME_COARSE), because expiries are
//     written to Redis and judged by every process that reads them. Each process judges an
//     entry's epoch-millisecond expiry by its own wall clock: a process S ahead of the writer sees
//     entries expire S early (extra loads, never a wrong value); one S behind serves them up to
//     min(S, grace) longer, bounded by Redis's own PEXPIRE. Lock leases are Redis's own PX.
//   - how long a caller *blocks* (wait_timeout, poll_interval, lock acquire timeouts): always
//     std::chrono::steady_clock, real time.
//
//   auto clock = std::make_shared<stampede::ManualClock>();
//   stampede::Cache<int> cache({.ttl = 30s, .clock = clock});
//   clock->advance(31s);   // the entry is now expired, no sleep needed
#pragma once

#include <atomic>
#include <chrono>
#include <memory>

#include "stampede/export.hpp"

namespace stampede {

/// A source of time for expiries. Its time_point is a system_clock::time_point, but only
/// system_clock() and SystemClock mean epoch time by it; monotonic_clock() and ManualClock count
/// from their own origin. Entries and locks must be judged by the clock that stamped them.
/// Implementations must be thread-safe.
class STAMPEDE_EXPORT Clock {
 public:
  using time_point = std::chrono::system_clock::time_point;
  virtual ~Clock() = default;
  /// @return the current time.
  virtual time_point now() const noexcept = 0;
};

/// The real clock: std::chrono::system_clock. Thread-safe.
class STAMPEDE_EXPORT SystemClock final : public Clock {
 public:
  time_point now() const noexcept override { return std::chrono::system_clock::now(); }
};

/// The system's wall clock read coarsely (Linux CLOCK_REALTIME_COARSE: the time of the last timer
/// tick, resolution 1-4 ms). A hit reads the clock once to judge expiry; the coarse read costs
/// ~14 ns against ~67 ns for the precise one on the 2-vCPU VM of docs/performance.md, and TTLs are
/// milliseconds anyway. Thread-safe.
class STAMPEDE_EXPORT CoarseSystemClock final : public Clock {
 public:
  time_point now() const noexcept override;
};

/// The shared wall clock: a CoarseSystemClock. The default of a Cache over a backend that names no
/// clock (the Redis backend, whose expiries are epoch times). Pass a SystemClock in
/// CacheOptions::clock if expiries need sub-millisecond precision.
STAMPEDE_EXPORT std::shared_ptr<const Clock> system_clock();

/// Linux CLOCK_MONOTONIC_COARSE (time since boot as of the last timer tick, resolution 1-4 ms,
/// as cheap as the coarse wall clock) in a system_clock::time_point whose epoch is meaningless:
/// it never jumps when the wall clock is set, and means nothing outside this process (nor across
/// a reboot). Thread-safe.
class STAMPEDE_EXPORT MonotonicClock final : public Clock {
 public:
  time_point now() const noexcept override;
};

/// The shared default clock of the embedded backend (memory_backend(), MemoryTokenLock, and
/// Cache(options) without options.clock): a MonotonicClock.
STAMPEDE_EXPORT std::shared_ptr<const Clock> monotonic_clock();

/// A clock that moves only when told to. Thread-safe (an atomic time point).
class STAMPEDE_EXPORT ManualClock final : public Clock {
 public:
  /// Starts at `start` (default: a fixed, arbitrary epoch time, so runs are reproducible).
  explicit ManualClock(time_point start = time_point(std::chrono::seconds(1'700'000'000)))
      : now_(start.time_since_epoch().count()) {}
  time_point now() const noexcept override {
    return time_point(time_point::duration(now_.load(std::memory_order_acquire)));
  }
  /// Moves the clock forward (or backward, for a negative duration).
  template <class Rep, class Period>
  void advance(std::chrono::duration<Rep, Period> d) noexcept {
    now_.fetch_add(std::chrono::duration_cast<time_point::duration>(d).count(), std::memory_order_acq_rel);
  }
  void set(time_point t) noexcept { now_.store(t.time_since_epoch().count(), std::memory_order_release); }

 private:
  std::atomic<time_point::rep> now_;
};

}  // namespace stampede
