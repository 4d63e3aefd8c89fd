#include "stampede/events.hpp"

namespace stampede {

std::string_view to_string(EventType type) noexcept {
  switch (type) {
    case EventType::lock_acquired:
      return "lock_acquired";
    case EventType::lock_timeout:
      return "lock_timeout";
    case EventType::lock_lost:
      return "lock_lost";
    case EventType::load_done:
      return "load_done";
    case EventType::load_failed:
      return "load_failed";
    case EventType::refresh_done:
      return "refresh_done";
    case EventType::refresh_failed:
      return "refresh_failed";
    case EventType::refresh_dropped:
      return "refresh_dropped";
    case EventType::stale_write_rejected:
      return "stale_write_rejected";
    case EventType::decode_failed:
      return "decode_failed";
    case EventType::backend_error:
      return "backend_error";
    case EventType::store_failed:
      return "store_failed";
  }
  return "unknown";
}

}  // namespace stampede
