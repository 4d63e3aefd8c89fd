// stampede/detail/counters.hpp: striped relaxed counters for hot paths.
//
// A hit must not write a cache line that another core also writes, or two threads reading one
// hot key would serialise on the counter. Each thread gets a stripe (a small index handed out
// round-robin on first use); a counter's value is the sum of its stripes.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

namespace stampede::detail {

inline constexpr std::size_t kCacheLine = 64;
inline constexpr std::size_t kStripes = 16;

/// This thread's stripe in [0, kStripes). Threads get consecutive stripes, so up to kStripes
/// threads never share one.
std::size_t this_thread_stripe() noexcept;

/// N relaxed counters striped over kStripes cache lines. Thread-safe.
template <std::size_t N>
class StripedCounters {
 public:
  void add(std::size_t counter, std::uint64_t n = 1) noexcept {
    stripes_[this_thread_stripe()].v[counter].fetch_add(n, std::memory_order_relaxed);
  }
  std::uint64_t sum(std::size_t counter) const noexcept {
    std::uint64_t total = 0;
    for (const auto& s : stripes_) total += s.v[counter].load(std::memory_order_relaxed);
    return total;
  }

 private:
  struct alignas(kCacheLine) Stripe {
    std::array<std::atomic<std::uint64_t>, N> v{};
  };
  std::array<Stripe, kStripes> stripes_{};
};

}  // namespace stampede::detail
