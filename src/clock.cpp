#include "stampede/clock.hpp"

#include <time.h>  // NOLINT(modernize-deprecated-headers): clock_gettime is POSIX, not in <ctime>

namespace stampede {

Clock::time_point CoarseSystemClock::now() const noexcept {
#ifdef CLOCK_REALTIME_COARSE
  timespec ts{};
  if (::clock_gettime(CLOCK_REALTIME_COARSE, &ts) == 0) {
    return time_point(std::chrono::duration_cast<time_point::duration>(std::chrono::seconds(ts.tv_sec) +
                                                                       std::chrono::nanoseconds(ts.tv_nsec)));
  }
#endif
  return std::chrono::system_clock::now();
}

Clock::time_point MonotonicClock::now() const noexcept {
  timespec ts{};
#ifdef CLOCK_MONOTONIC_COARSE
  if (::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts) != 0) ::clock_gettime(CLOCK_MONOTONIC, &ts);
#else
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
#endif
  return time_point(std::chrono::duration_cast<time_point::duration>(std::chrono::seconds(ts.tv_sec) +
                                                                     std::chrono::nanoseconds(ts.tv_nsec)));
}

std::shared_ptr<const Clock> monotonic_clock() {
  static const auto clock = std::make_shared<const MonotonicClock>();
  return clock;
}

std::shared_ptr<const Clock> system_clock() {
  static const auto clock = std::make_shared<const CoarseSystemClock>();
  return clock;
}

}  // namespace stampede
