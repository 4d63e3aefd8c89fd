// stampede/stats.hpp: counters of what a Cache did.
//
//   stampede::Stats s = cache.stats();
//   std::cout << s.to_json().dump() << '\n';   // {"hits":10,"misses":1,"loads":1,...}
//   double hit_ratio = double(s.hits) / double(s.hits + s.misses);
#pragma once

#include <chrono>
#include <cstdint>

#include <nlohmann/json_fwd.hpp>

namespace stampede {

/// A snapshot of a Cache's counters since construction. A plain value; thread-compatible.
struct Stats {
  std::uint64_t hits = 0;                  ///< fresh values returned from the store
  std::uint64_t misses = 0;                ///< calls that found no servable value
  std::uint64_t stale_hits = 0;            ///< SWR: stale values returned at once
  std::uint64_t loads = 0;                 ///< loader runs (foreground, fallback and refresh)
  std::uint64_t load_failures = 0;         ///< loader runs that threw
  std::chrono::nanoseconds load_time{0};   ///< total time spent in loaders
  std::uint64_t coalesced = 0;             ///< callers served by another caller's load
  std::uint64_t lock_acquired = 0;         ///< token locks taken
  std::uint64_t lock_contended = 0;        ///< token lock attempts that found it held
  std::uint64_t wait_timeouts = 0;         ///< waits that reached wait_timeout
  std::uint64_t fallback_computes = 0;     ///< loads run after a wait timeout (OnWaitTimeout::compute)
  std::uint64_t refreshes = 0;             ///< background refreshes that stored a value
  std::uint64_t refresh_failures = 0;      ///< background refreshes whose loader threw
  std::uint64_t refreshes_dropped = 0;     ///< refreshes not queued because the queue was full
  std::uint64_t stale_writes_rejected = 0; ///< stores refused because a newer fence exists
  std::uint64_t backend_errors = 0;        ///< backend failures (fail_open went on without it)
  std::uint64_t store_failures = 0;        ///< loaded values that could not be stored (encode/backend error)
  std::uint64_t decode_errors = 0;         ///< stored values that could not be decoded (treated as misses)
  std::uint64_t evictions = 0;             ///< in-process entries evicted for max_entries

  /// @return every counter as a JSON object; load_time as "load_time_ns".
  nlohmann::json to_json() const;
};

}  // namespace stampede
