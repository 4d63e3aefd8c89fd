#include "stampede/detail/stripes.hpp"

#include <pthread.h>

#include <atomic>
#include <cstdint>

namespace stampede::detail {
namespace {

// Bit i set = exclusive stripe i is owned by a live thread.
std::atomic<std::uint32_t> owned_stripes{0};
static_assert(kExclusiveStripes < 32);

// Constructed on the thread's claim of an exclusive stripe, so destroyed at its exit after every
// thread_local constructed later and before every one constructed earlier.
struct StripeReleaser {
  StripeSlot* slot = nullptr;
  StripeReleaser() = default;
  StripeReleaser(const StripeReleaser&) = delete;
  StripeReleaser& operator=(const StripeReleaser&) = delete;
  ~StripeReleaser() {
    if (slot == nullptr || !slot->exclusive) return;
    const std::size_t index = slot->index;
    // First switch: a destructor that runs after this one must not use the stripe as its own.
    *slot = {kStripes - 1, false};
    release_stripe(index);
  }
};

// In a fork()ed child only the forking thread exists: keep its stripe, free the others.
[[maybe_unused]] const int stripes_reset_in_child = ::pthread_atfork(nullptr, nullptr, [] {
  const StripeSlot& mine = this_thread_slot();
  owned_stripes.store(mine.exclusive ? std::uint32_t{1} << mine.index : 0, std::memory_order_relaxed);
});

}  // namespace

StripeSlot claim_stripe() noexcept {
  std::uint32_t mask = owned_stripes.load(std::memory_order_relaxed);
  for (;;) {
    constexpr std::uint32_t kAll = (std::uint32_t{1} << kExclusiveStripes) - 1;
    const std::uint32_t free = ~mask & kAll;
    if (free == 0) return {kStripes - 1, false};
    const std::uint32_t bit = free & (~free + 1);  // lowest free stripe
    // acquire: see the counts the stripe's previous owner wrote with plain stores.
    if (owned_stripes.compare_exchange_weak(mask, mask | bit, std::memory_order_acquire,
                                            std::memory_order_relaxed)) {
      return {static_cast<std::size_t>(__builtin_ctz(bit)), true};
    }
  }
}

void release_stripe(std::size_t index) noexcept {
  // release: the next owner's plain load-and-store continues from this thread's last store.
  owned_stripes.fetch_and(~(std::uint32_t{1} << index), std::memory_order_release);
}

void claim_this_thread_stripe(StripeSlot& slot) noexcept {
  slot = claim_stripe();
  if (slot.exclusive) {
    thread_local StripeReleaser releaser;
    releaser.slot = &slot;
  }
}

}  // namespace stampede::detail
