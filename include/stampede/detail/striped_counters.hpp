// stampede/detail/striped_counters.hpp: counters that a hit can bump without a shared write.
//
// N relaxed counters, one copy per stripe (detail/stripes.hpp), each stripe on its own cache
// line; sum() adds the stripes up.
//
//   detail::StripedCounters<2> c;
//   c.add(0);                 // this thread's stripe
//   std::uint64_t n = c.sum(0);
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "stampede/detail/stripes.hpp"

namespace stampede::detail {

/// N relaxed counters striped over kStripes cache lines. Thread-safe; sum() is a snapshot that
/// may miss increments still in flight.
template <std::size_t N>
class StripedCounters {
 public:
  void add(std::size_t counter, std::uint64_t n = 1) noexcept {
    const StripeSlot& s = this_thread_stripe();
    std::atomic<std::uint64_t>& c = stripes_[s.index].v[counter];
    if (s.exclusive) {
      c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);  // sole writer
    } else {
      c.fetch_add(n, std::memory_order_relaxed);
    }
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
