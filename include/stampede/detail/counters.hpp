// stampede/detail/counters.hpp: per-thread stripes and striped counters for hot paths.
//
// A hit must not write a cache line that another core also writes, or two threads reading one
// hot key would serialise on it. Each thread claims a stripe on first use. The first
// kExclusiveStripes live threads each own one exclusively: only that thread writes it, so it
// can update it with a plain load + store instead of a locked read-modify-write. Threads beyond
// that share the last stripe and use atomic read-modify-writes on it. A thread gives its stripe
// back when it exits.
//
//   detail::StripedCounters<2> c;
//   c.add(0);                 // this thread's stripe
//   std::uint64_t n = c.sum(0);
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

#if defined(__SANITIZE_THREAD__)
#define STAMPEDE_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define STAMPEDE_TSAN 1
#endif
#endif

namespace stampede::detail {

inline constexpr std::size_t kCacheLine = 64;
inline constexpr std::size_t kExclusiveStripes = 16;
/// Stripes per striped object: the exclusive ones plus one shared overflow stripe (the last).
inline constexpr std::size_t kStripes = kExclusiveStripes + 1;

/// A thread's stripe: its index in [0, kStripes), and whether the thread owns it alone.
struct StripeSlot {
  std::size_t index;
  bool exclusive;
};

/// Claims a free exclusive stripe, or the shared one if all are taken. (src/clock.cpp)
StripeSlot claim_stripe() noexcept;
/// Gives an exclusive stripe back. (src/clock.cpp)
void release_stripe(std::size_t index) noexcept;

struct ThreadStripe {
  StripeSlot slot = claim_stripe();
  ThreadStripe() = default;
  ThreadStripe(const ThreadStripe&) = delete;
  ThreadStripe& operator=(const ThreadStripe&) = delete;
  ~ThreadStripe() {
    if (slot.exclusive) release_stripe(slot.index);
  }
};

/// This thread's stripe, claimed on first use and released when the thread exits.
inline const StripeSlot& this_thread_stripe() noexcept {
  thread_local const ThreadStripe stripe;
  return stripe.slot;
}

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
