// stampede/options.hpp: CacheOptions, Mode, OnWaitTimeout, BackendFailure.
//
// Plain structs with in-class defaults; designated initialisers read well:
//
//   stampede::Cache<Item> cache({.ttl = 30s, .lock_ttl = 5s, .wait_timeout = 1s});
//   stampede::Cache<Item> swr({.mode = stampede::Mode::stale_while_revalidate,
//                              .soft_ttl = 10s, .swr_window = 10s});
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>

#include "stampede/call.hpp"  // kMaxLifetime
#include "stampede/clock.hpp"
#include "stampede/events.hpp"
#include "stampede/export.hpp"

namespace stampede {

/// How entries age.
enum class Mode {
  /// An entry lives `ttl`; after that a call is a miss and waits for one load.
  blocking,
  /// An entry is fresh for `soft_ttl`, then served stale (at once, while one background refresh
  /// runs) for `swr_window`, then gone.
  stale_while_revalidate,
};

/// What a caller does after waiting `wait_timeout` for someone else's load.
enum class OnWaitTimeout {
  compute,      ///< run the loader itself, without the lock; the value is returned, not stored
  throw_error,  ///< throw stampede::timeout_error
  serve_stale,  ///< return a stale value if one is still servable, else throw timeout_error
};

/// What the cache does when its backend (Redis) fails.
enum class BackendFailure {
  fail_open,    ///< report it (stats, event hook) and load with in-process coalescing only
  fail_closed,  ///< throw stampede::backend_error
};

/// Options of a Cache. Every duration must be > 0 unless its comment says what 0 means; lifetimes
/// (ttl, soft_ttl, swr_window, lock_ttl, poll_interval, negative_ttl, fail_safe_max_age,
/// fail_safe_throttle) at most kMaxLifetime (10 years); waits and loader timeouts any value
/// (milliseconds::max() = as long as it takes). Cache's constructor throws std::invalid_argument
/// naming the first bad field.
struct CacheOptions {
  Mode mode = Mode::blocking;
  /// Blocking mode: how long an entry lives (its hard TTL). Must be > 0.
  std::chrono::milliseconds ttl{std::chrono::seconds{30}};
  /// SWR mode: how long an entry is fresh. Must be > 0.
  std::chrono::milliseconds soft_ttl{std::chrono::seconds{10}};
  /// SWR mode: how long after soft_ttl a stale entry is still served. >= 0; 0 = never stale.
  std::chrono::milliseconds swr_window{std::chrono::seconds{10}};
  /// Lease of the token lock taken for a load; the watchdog renews it every lock_ttl/3. Must be > 0.
  std::chrono::milliseconds lock_ttl{std::chrono::seconds{5}};
  /// How long a caller waits for another caller's load before on_wait_timeout. Must be > 0.
  std::chrono::milliseconds wait_timeout{std::chrono::seconds{1}};
  /// Blocking-poll fallback: re-read the store this often (jittered +-25%) while waiting,
  /// in case a wake-up signal is lost. Must be > 0.
  std::chrono::milliseconds poll_interval{100};
  OnWaitTimeout on_wait_timeout = OnWaitTimeout::compute;
  /// Cache<std::optional<U>> only: how long an empty result (the loader returned std::nullopt) is
  /// cached, instead of ttl (SWR: soft_ttl). >= 0; 0 = an empty result is handed to the callers of
  /// its load but not stored.
  std::chrono::milliseconds negative_ttl{0};
  BackendFailure backend_failure = BackendFailure::fail_open;
  /// Shortens each entry's TTL by a random fraction in [0, ttl_jitter) so that keys written together
  /// do not expire together. In [0, 1]; 0 = off.
  double ttl_jitter = 0.0;
  /// XFetch probabilistic early refresh: a fresh hit refreshes in the background when
  /// now - load_time * beta * ln(U) >= expiry, U uniform in (0, 1]. >= 0; 0 = off; 1 is the usual value.
  double early_refresh_beta = 0.0;
  /// A load that runs longer than this, for a key with an old value still in the store (expired
  /// but kept: the store's grace, or SWR past its window), hands every caller of its flight that
  /// old value; the load goes on in the background and stores its value (fenced) when done.
  /// >= 0; 0 = off. Either timeout > 0 runs loads on background_load_threads.
  std::chrono::milliseconds loader_soft_timeout{0};
  /// A load that runs longer than this throws timeout_error in every caller of its flight (serves
  /// the old value instead if there is one); the load goes on and stores its value when done.
  /// >= 0; 0 = off. With both set, must be >= loader_soft_timeout.
  std::chrono::milliseconds loader_hard_timeout{0};
  /// Threads that run loads when a loader timeout is set (started on first use). A load is handed
  /// only to an idle one (it never queues behind another key's load); when all are busy it runs
  /// on the caller's thread, without the timeouts. >= 1. Asynchronous calls (stampede/asio.hpp)
  /// get as many threads again, of their own, for the steps of a call that may block (a
  /// synchronous loader, a read or lock that waits for Redis); those steps queue.
  std::size_t background_load_threads = 4;
  /// Fail-safe: how long past its expiry (blocking: ttl; SWR: the end of the stale window) a value
  /// stays in the store as "last good". When a load fails (the loader throws) and the last good
  /// value is still there, every caller of that load gets it instead of the error (counted in
  /// fail_safe_served, reported by EventType::fail_safe) and it is re-armed for fail_safe_throttle.
  /// The Redis key's lifetime follows (its grace counts from here). >= 0; 0 = off.
  std::chrono::milliseconds fail_safe_max_age{0};
  /// Fail-safe: how long a last good value served after a failure counts as fresh again (in the
  /// shared store, under the failed load's fence), so that callers in every process get it without
  /// calling the loader; then one caller tries the loader again. Must be > 0.
  std::chrono::milliseconds fail_safe_throttle{std::chrono::seconds{30}};
  /// Background refresh threads (SWR and early refresh). >= 1.
  std::size_t refresh_threads = 1;
  /// Refreshes waiting for a thread; more are dropped and counted. >= 1.
  std::size_t refresh_queue = 1024;
  /// Capacity, in entries, of the embedded backend that Cache(options) creates; 0 = unbounded.
  /// Eviction: see MemoryStore. Ignored when a Backend is passed (give memory_backend<T>(n) the
  /// capacity instead).
  std::size_t max_entries = 0;
  /// Receives structured events; empty = none.
  EventHook on_event;
  /// Time source for expiries; null = the backend's (Backend::clock: monotonic_clock() for the
  /// embedded backend), or system_clock() if it names none (Redis).
  std::shared_ptr<const Clock> clock;
};

/// Throws std::invalid_argument naming the first field that makes no sense.
STAMPEDE_EXPORT void validate(const CacheOptions& options);

}  // namespace stampede
