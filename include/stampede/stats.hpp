// stampede/stats.hpp: the counters of what a Cache did, listed once, and their Prometheus text.
//
// One table (STAMPEDE_CACHE_COUNTERS, STAMPEDE_BACKEND_COUNTERS) makes the Cache's counters, the
// fields of Stats and BackendCounters, their JSON (stampede/json.hpp) and their Prometheus text:
// adding a counter is one line there.
//
//   stampede::Stats s = cache.stats();
//   double hit_ratio = double(s.hits) / double(s.hits + s.misses);
//   std::string metrics = stampede::to_prometheus(s);   // "# HELP stampede_hits_total ..."
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "stampede/export.hpp"

/// The counters a Cache keeps itself: X(name, kind, help), where kind is `count` (a
/// std::uint64_t) or `nanoseconds` (a std::chrono::nanoseconds). In JSON a nanoseconds counter
/// is "<name>_ns"; in Prometheus a count is <prefix>_<name>_total, nanoseconds are
/// <prefix>_<name>_seconds_total.
#define STAMPEDE_CACHE_COUNTERS(X)                                                                    \
  X(hits, count, "Fresh values returned from the store.")                                             \
  X(misses, count, "Calls that found no servable value.")                                             \
  X(stale_hits, count, "Stale values returned at once (stale-while-revalidate).")                     \
  X(loads, count, "Loader runs (foreground, fallback and refresh).")                                  \
  X(load_failures, count, "Loader runs that threw.")                                                  \
  X(load_time, nanoseconds, "Time spent in loaders.")                                                 \
  X(coalesced, count, "Callers served by another caller's load.")                                     \
  X(lock_acquired, count, "Token locks taken.")                                                       \
  X(lock_contended, count, "Token lock attempts that found the lock held.")                           \
  X(wait_timeouts, count, "Waits for another caller's load that reached wait_timeout.")               \
  X(fallback_computes, count, "Loads run after a wait timeout (OnWaitTimeout::compute).")             \
  X(refreshes, count, "Background refreshes that stored a value.")                                    \
  X(refresh_failures, count, "Background refreshes whose loader (or its copy) threw.")                \
  X(refreshes_dropped, count, "Refreshes not queued because the queue was full.")                     \
  X(stale_writes_rejected, count, "Stores refused because a newer fence exists.")                     \
  X(backend_errors, count, "Backend failures (fail_open went on without the backend).")               \
  X(store_failures, count, "Loaded values that could not be stored (encode or backend error).")       \
  X(decode_errors, count, "Stored values that could not be decoded (treated as misses).")             \
  X(cancelled, count, "Waits ended by the caller's stop token (cancelled_error).")                    \
  X(soft_timeouts, count, "Loads that outran loader_soft_timeout (their callers got the old value).") \
  X(hard_timeouts, count, "Loads that outran loader_hard_timeout with nothing old to serve.")         \
  X(stale_served, count, "Callers handed an old value because their load outran its timeout.")        \
  X(background_loads, count, "Loads run on a background load thread (a loader timeout is set).")      \
  X(fail_safe_served, count, "Failed loads answered with the last good value (fail-safe), re-armed.")

/// The counters a backend reports through Store::add_counters, in the same form; 0 for a backend
/// that does not keep one.
#define STAMPEDE_BACKEND_COUNTERS(X)                                                              \
  X(near_hits, count, "Reads answered by the Redis backend's near cache (no round trip).")        \
  X(near_misses, count, "Reads the near cache could not answer (went to Redis).")                 \
  X(near_invalidations, count, "Keys the near cache was told by Redis were written.")             \
  X(near_flushes, count, "Times the whole near cache was dropped (tracking lost, server flush).") \
  X(evictions, count, "Entries the in-process store evicted for max_entries.")

/// Every counter of Stats, in order.
#define STAMPEDE_COUNTERS(X) STAMPEDE_CACHE_COUNTERS(X) STAMPEDE_BACKEND_COUNTERS(X)

namespace stampede {

namespace detail {
/// The C++ type of each kind of counter in the tables above.
using stat_count = std::uint64_t;
using stat_nanoseconds = std::chrono::nanoseconds;
}  // namespace detail

/// A snapshot of a Cache's counters since construction, one field per line of the tables above
/// (e.g. `hits`, `load_time`, `evictions`). A plain value; thread-compatible.
struct Stats {
#define STAMPEDE_STATS_FIELD(name, kind, help) detail::stat_##kind name{};
  STAMPEDE_COUNTERS(STAMPEDE_STATS_FIELD)
#undef STAMPEDE_STATS_FIELD
};

/// What a store adds to Stats (Store::add_counters): one field per line of
/// STAMPEDE_BACKEND_COUNTERS, all 0 to start with. A plain value; thread-compatible.
struct BackendCounters {
#define STAMPEDE_BACKEND_COUNTERS_FIELD(name, kind, help) detail::stat_##kind name{};
  STAMPEDE_BACKEND_COUNTERS(STAMPEDE_BACKEND_COUNTERS_FIELD)
#undef STAMPEDE_BACKEND_COUNTERS_FIELD
};

/// Prometheus text exposition (format 0.0.4) of `stats`: for each counter a `# HELP` and a
/// `# TYPE ... counter` line and its value; counts as `<prefix>_<name>_total`, durations in
/// seconds as `<prefix>_<name>_seconds_total`.
/// @param stats the snapshot.
/// @param prefix the metric names' first part, e.g. "myapp_items_cache"; empty = no prefix. It
///        must be a metric name: [a-zA-Z_:][a-zA-Z0-9_:]*.
/// @return the text, one line per "\n", ending in "\n".
/// @throws std::invalid_argument for a prefix that is no metric name.
STAMPEDE_EXPORT std::string to_prometheus(const Stats& stats, std::string_view prefix = "stampede");

}  // namespace stampede
