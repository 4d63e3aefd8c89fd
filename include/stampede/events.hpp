// stampede/events.hpp: structured events for the application's own logger.
//
// The library prints nothing. Pass a hook in CacheOptions::on_event to see what happens:
//
//   opts.on_event = [](const stampede::Event& e) {
//     spdlog::info("stampede {} key={} {}", stampede::to_string(e.type), e.key, e.detail); };
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <string_view>

#include "stampede/export.hpp"

namespace stampede {

/// Every event type: X(name, what it means). The enumerator's name is its to_string() name.
#define STAMPEDE_EVENT_TYPES(X)                                                                          \
  X(lock_acquired, "this process took the token lock for a load or refresh")                             \
  X(lock_timeout, "a caller waited wait_timeout for another loader")                                     \
  X(lock_lost, "the watchdog could not renew a lease (expired or stolen)")                               \
  X(load_done, "a loader returned; `duration` is its run time")                                          \
  X(load_failed, "a loader threw; `detail` is its what()")                                               \
  X(refresh_done, "a background refresh stored a new value")                                             \
  X(refresh_failed, "a background refresh failed; the stale value stays until hard expiry")              \
  X(refresh_dropped, "the refresh queue was full")                                                       \
  X(stale_write_rejected, "a store with an older fence was refused (the fence did its job)")             \
  X(decode_failed, "a stored value could not be decoded; treated as a miss")                             \
  X(backend_error, "the backend failed; `detail` says how (fail_open goes on without it)")               \
  X(near_cache_flushed, "the Redis near cache dropped every entry; `detail` says why")                   \
  X(store_failed, "a loaded value could not be stored (every caller still gets it); `detail` says why")  \
  X(load_timeout, "a load outran loader_soft_timeout/loader_hard_timeout; it goes on in the background") \
  X(fail_safe, "a load failed; its callers got the last good value; `detail` is the loader's error")

/// What happened; see STAMPEDE_EVENT_TYPES for each one's meaning.
enum class EventType {
#define STAMPEDE_EVENT_TYPE_ENUMERATOR(name, what) name,
  STAMPEDE_EVENT_TYPES(STAMPEDE_EVENT_TYPE_ENUMERATOR)
#undef STAMPEDE_EVENT_TYPE_ENUMERATOR
};

/// @return a stable lowercase name, e.g. "lock_acquired".
STAMPEDE_EXPORT std::string_view to_string(EventType type) noexcept;

/// One event. `key` and `detail` are valid only during the hook call.
struct Event {
  EventType type;
  std::string_view key;
  std::string_view detail;
  std::chrono::nanoseconds duration{0};
};

/// Called synchronously on the thread where the event happens; must be thread-safe and fast,
/// and must not throw (an exception from the hook is swallowed).
using EventHook = std::function<void(const Event&)>;

}  // namespace stampede
