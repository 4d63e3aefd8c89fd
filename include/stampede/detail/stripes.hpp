// stampede/detail/stripes.hpp: per-thread stripes, so that hot paths write no shared cache line.
//
// A hit must not write a cache line that another core also writes, or two threads reading one
// hot key would serialise on it. Each thread claims a stripe on first use. The first
// kExclusiveStripes live threads each own one exclusively: only that thread writes it, so it
// can update it with a plain load + store instead of a locked read-modify-write. Threads beyond
// that share the last stripe and use atomic read-modify-writes on it. StripedCounters and
// ReadMostlyMutex keep one slot per stripe.
//
// Thread exit. A thread gives its exclusive stripe back when it exits, and from that moment on it
// uses the shared stripe (atomic read-modify-writes) for whatever it still does: thread_local
// destructors that run after the release (those of objects constructed before the thread's first
// use of a stripe) may still take a ReadMostlyMutex or count, while another thread already owns
// the stripe. The thread's slot is a trivially destructible thread_local (readable until the thread
// is gone); a separate thread_local releaser, constructed at the claim, switches the slot to the
// shared stripe and then gives the exclusive one back. A thread never claims an exclusive stripe
// again after that. (A thread whose first use of a stripe happens after its thread_local
// destructors have run, e.g. in a pthread key destructor, keeps its stripe claimed for good: one
// stripe fewer for later threads, never a conflict.)
//
// fork(): in the child only the forking thread exists; the child starts with only that thread's
// stripe claimed, so stripes of the parent's other threads are free again.
//
//   const detail::StripeSlot& s = detail::this_thread_stripe();
//   slots[s.index] += 1;      // a plain store if s.exclusive, else an atomic fetch_add
#pragma once

#include <cstddef>

#include "stampede/detail/sanitizers.hpp"
#include "stampede/export.hpp"

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

/// Claims a free exclusive stripe, or the shared one if all are taken. Thread-safe.
STAMPEDE_EXPORT StripeSlot claim_stripe() noexcept;
/// Gives an exclusive stripe back. Thread-safe.
STAMPEDE_EXPORT void release_stripe(std::size_t index) noexcept;

/// The index of a slot whose thread has not claimed a stripe yet.
inline constexpr std::size_t kUnclaimedStripe = kStripes;

/// The calling thread's slot: kUnclaimedStripe until its first use. Trivially destructible, so it
/// stays readable through all of the thread's thread_local destructors. Exported, so that the
/// library and its users share one slot per thread also when the library is a shared one.
STAMPEDE_EXPORT inline StripeSlot& this_thread_slot() noexcept {
  thread_local constinit StripeSlot slot{kUnclaimedStripe, false};
  return slot;
}

/// Claims a stripe into `slot` (the calling thread's) and, for an exclusive one, arranges for it
/// to be given back at thread exit after the slot was switched to the shared stripe.
STAMPEDE_EXPORT void claim_this_thread_stripe(StripeSlot& slot) noexcept;

/// This thread's stripe, claimed on first use. Exclusive until the thread starts exiting (see the
/// banner), the shared one after.
inline const StripeSlot& this_thread_stripe() noexcept {
  StripeSlot& slot = this_thread_slot();
  if (slot.index == kUnclaimedStripe) [[unlikely]] {
    claim_this_thread_stripe(slot);
  }
  return slot;
}

}  // namespace stampede::detail
