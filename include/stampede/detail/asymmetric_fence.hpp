// stampede/detail/asymmetric_fence.hpp: a fence pair for a handshake whose one side runs far more
// often than the other.
//
// A Dekker-style handshake (detail::ReadMostlyMutex: a reader stores its count then loads the
// writer flag, a writer stores the flag then loads the counts) needs a full fence between the store
// and the load on both sides. When readers run millions of times per write, the writer can do the
// work of both: light_fence() on the frequent side is then only a compiler barrier, and
// heavy_fence() on the rare side makes every running thread of the process execute a full memory
// barrier (Linux membarrier(2), MEMBARRIER_CMD_PRIVATE_EXPEDITED, one system call that interrupts
// the CPUs running this process's threads). A thread that is not running at that moment passes
// through the kernel's own barriers when it is switched out and in, so in the single order of
// fences each light_fence() is either before the heavy one (its store is visible to the writer's
// loads) or after it (its load sees the writer's store), exactly as with two seq_cst fences.
//
//   reader: count = 1; light_fence(); if (!writer) read();     writer: writer = true; heavy_fence();
//                                                                      wait for count == 0
//
// Whether the pair is asymmetric is decided per process, on first use: when the kernel lacks
// membarrier's private expedited command (before Linux 4.14, or a seccomp filter that forbids the
// call), or registering for it fails, both functions are a seq_cst fence. If membarrier starts
// failing later (a seccomp filter installed after start-up), the heavy fence that finds it failing
// switches the pair to seq_cst fences for good (light_fence() reads the mode on every call) and,
// from then on, every heavy_fence() also makes another process-wide barrier (an mprotect() that
// forces a TLB shootdown, on x86), for a reader that read the mode just before the switch: the
// writer side never silently loses its barrier. A fork()ed child keeps the decision; its membarrier
// registration is the parent's (the kernel copies it with the address space). Under
// ThreadSanitizer, which does not model fences, callers use read-modify-writes instead (see
// read_mostly_mutex.hpp).
#pragma once

#include <atomic>
#include <cstdint>

#include "stampede/detail/sanitizers.hpp"
#include "stampede/export.hpp"

namespace stampede::detail {

/// 0 until decided, then 1 (both fences are seq_cst fences) or 2 (asymmetric). Written by
/// decide_fence_mode(), and set from 2 to 1 by heavy_fence() if membarrier fails later; read it
/// through asymmetric_fences().
STAMPEDE_EXPORT extern std::atomic<int> fence_mode;

/// Decides the mode on the first call (thread-safe; later calls return the decision).
/// @return 1 or 2, as fence_mode.
STAMPEDE_EXPORT int decide_fence_mode() noexcept;

/// @return whether light_fence() is a compiler barrier paired with a membarrier heavy_fence().
///         The same answer for every thread, until membarrier fails (then false for good).
///         Thread-safe.
inline bool asymmetric_fences() noexcept {
  int mode = fence_mode.load(std::memory_order_acquire);
  if (mode == 0) mode = decide_fence_mode();
  return mode == 2;
}

/// A seam for tests: heavy_fence() calls `call(command)` instead of the membarrier(2) system call
/// (null = the system call again). Set it while no heavy_fence() runs.
STAMPEDE_EXPORT void set_membarrier_for_testing(long (*call)(int command)) noexcept;

/// @return how many heavy_fence() calls used the fallback barrier because membarrier failed.
STAMPEDE_EXPORT std::uint64_t heavy_fence_fallbacks() noexcept;

#ifndef STAMPEDE_TSAN  // ThreadSanitizer rejects fences; its builds use read-modify-writes instead

/// The frequent side's fence. Thread-safe, lock-free.
inline void light_fence() noexcept {
  if (asymmetric_fences()) {
    std::atomic_signal_fence(std::memory_order_seq_cst);
  } else {
    std::atomic_thread_fence(std::memory_order_seq_cst);
  }
}

/// The rare side's fence: with asymmetric fences, a barrier on every running thread of the
/// process (a system call, some microseconds); otherwise a seq_cst fence, plus the fallback
/// barrier once membarrier has failed (see the top of this file). Thread-safe.
STAMPEDE_EXPORT void heavy_fence() noexcept;

#endif

}  // namespace stampede::detail
