#include "stampede/events.hpp"

namespace stampede {

std::string_view to_string(EventType type) noexcept {
  switch (type) {
#define STAMPEDE_EVENT_TYPE_NAME(name, what) \
  case EventType::name:                      \
    return #name;
    STAMPEDE_EVENT_TYPES(STAMPEDE_EVENT_TYPE_NAME)
#undef STAMPEDE_EVENT_TYPE_NAME
  }
  return "unknown";
}

}  // namespace stampede
