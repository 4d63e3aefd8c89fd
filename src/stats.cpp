#include "stampede/stats.hpp"

#include <nlohmann/json.hpp>

#include "stampede/events.hpp"

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

std::string_view to_string(EventType type) noexcept {
  switch (type) {
    case EventType::lock_acquired: return "lock_acquired";
    case EventType::lock_timeout: return "lock_timeout";
    case EventType::lock_lost: return "lock_lost";
    case EventType::load_done: return "load_done";
    case EventType::load_failed: return "load_failed";
    case EventType::refresh_done: return "refresh_done";
    case EventType::refresh_failed: return "refresh_failed";
    case EventType::refresh_dropped: return "refresh_dropped";
    case EventType::stale_write_rejected: return "stale_write_rejected";
    case EventType::decode_failed: return "decode_failed";
    case EventType::backend_error: return "backend_error";
    case EventType::store_failed: return "store_failed";
  }
  return "unknown";
}

}  // namespace stampede
