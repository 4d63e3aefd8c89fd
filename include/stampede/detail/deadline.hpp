// stampede/detail/deadline.hpp: deadlines that saturate instead of overflowing.
//
// A wait of std::chrono::milliseconds::max() means "as long as it takes": now + max overflows the
// clock's nanoseconds, so a deadline is time_point::max() whenever the sum would not fit.
//
//   const auto until = detail::deadline_after(options.wait_timeout);   // never in the past for d > 0
#pragma once

#include <chrono>

namespace stampede::detail {

/// @return steady_clock::now() + d, or steady_clock::time_point::max() if that does not fit;
///         now for d <= 0.
inline std::chrono::steady_clock::time_point deadline_after(std::chrono::milliseconds d) noexcept {
  using time_point = std::chrono::steady_clock::time_point;
  const time_point now = std::chrono::steady_clock::now();
  if (d.count() <= 0) return now;
  // Compared in milliseconds: d in the clock's nanoseconds may itself overflow.
  if (d >= std::chrono::duration_cast<std::chrono::milliseconds>(time_point::max() - now))
    return time_point::max();
  return now + d;
}

}  // namespace stampede::detail
