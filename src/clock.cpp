#include "stampede/clock.hpp"

#include <time.h>

#include <random>

#include "stampede/detail/counters.hpp"

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

std::shared_ptr<const Clock> system_clock() {
  static const auto clock = std::make_shared<const CoarseSystemClock>();
  return clock;
}

namespace detail {

std::size_t this_thread_stripe() noexcept {
  static std::atomic<std::size_t> next{0};
  thread_local const std::size_t stripe = next.fetch_add(1, std::memory_order_relaxed) % kStripes;
  return stripe;
}

std::minstd_rand& thread_rng() noexcept {
  thread_local std::minstd_rand rng{std::random_device{}()};
  return rng;
}

std::chrono::nanoseconds jittered(std::chrono::nanoseconds d, double spread) noexcept {
  if (spread <= 0) return d;
  std::uniform_real_distribution<double> factor(1.0 - spread, 1.0 + spread);
  return std::chrono::nanoseconds(
      static_cast<std::chrono::nanoseconds::rep>(static_cast<double>(d.count()) * factor(thread_rng())));
}

double uniform_open0() noexcept {
  // uniform_real_distribution gives [0, 1); 1 - u is in (0, 1], so log() stays finite.
  return 1.0 - std::uniform_real_distribution<double>(0.0, 1.0)(thread_rng());
}

}  // namespace detail
}  // namespace stampede
