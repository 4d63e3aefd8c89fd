#include "stampede/stats.hpp"

#include <nlohmann/json.hpp>

namespace stampede {

nlohmann::json Stats::to_json() const {
  return nlohmann::json{
      {"hits", hits},
      {"misses", misses},
      {"stale_hits", stale_hits},
      {"loads", loads},
      {"load_failures", load_failures},
      {"load_time_ns", load_time.count()},
      {"coalesced", coalesced},
      {"lock_acquired", lock_acquired},
      {"lock_contended", lock_contended},
      {"wait_timeouts", wait_timeouts},
      {"fallback_computes", fallback_computes},
      {"refreshes", refreshes},
      {"refresh_failures", refresh_failures},
      {"refreshes_dropped", refreshes_dropped},
      {"stale_writes_rejected", stale_writes_rejected},
      {"backend_errors", backend_errors},
      {"store_failures", store_failures},
      {"decode_errors", decode_errors},
      {"evictions", evictions},
  };
}

}  // namespace stampede
