// stampede/detail/read_mostly_mutex.hpp: a reader-writer lock whose readers do not share a line.
//
// std::shared_mutex makes every reader write the same word, so two cores reading one hot key
// bounce that cache line between them and scale worse than one core. Here each reader thread
// counts itself in its own stripe (detail::this_thread_stripe()); a writer raises a flag and
// waits for every stripe to drain. Readers are cheap and independent; writers are rare and pay
// O(kStripes). (The "big reader" lock of the Linux kernel; folly's SharedMutex has a similar
// deferred-reader path.)
//
//   detail::ReadMostlyMutex mu;
//   { std::shared_lock r(mu); read(); }   { std::unique_lock w(mu); write(); }
//
// Memory ordering. This is Dekker's pattern: the reader stores to its stripe, then loads `writer_`;
// the writer stores `writer_`, then loads every stripe. Each side puts a fence between its store
// and its load, so in the single total order of those fences either the writer sees the reader's
// count (and waits for its release-store of the decrement) or the reader sees `writer_ == true`
// (and backs off before touching the data). Acquire/release alone would allow both to miss each
// other. The fences are asymmetric (asymmetric_fence.hpp): the reader's light_fence() is a compiler
// barrier and the writer's heavy_fence() is a membarrier(2) system call that makes every running
// thread of the process execute the full barrier, so writes cost some microseconds more and reads
// no fence at all (where membarrier is unavailable, both are seq_cst fences). A reader that owns
// its stripe (StripeSlot::exclusive) updates it with plain stores, so a read lock costs no locked
// read-modify-write and no serialising instruction. Readers on the shared overflow stripe, and every
// reader under ThreadSanitizer (which does not model fences; the fence code is not even compiled
// there), use seq_cst read-modify-writes, and then every access of the pattern is seq_cst.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <thread>

#include "stampede/detail/asymmetric_fence.hpp"
#include "stampede/detail/sanitizers.hpp"
#include "stampede/detail/stripes.hpp"

namespace stampede::detail {

/// Meets the SharedMutex named requirements for lock()/unlock()/lock_shared()/unlock_shared().
/// A thread must not hold it shared twice (no recursion) nor upgrade. Thread-safe.
class ReadMostlyMutex {
 public:
  void lock_shared() noexcept {
    const StripeSlot& s = this_thread_stripe();
    std::atomic<std::uint32_t>& count = readers_[s.index].count;
    for (;;) {
#ifndef STAMPEDE_TSAN
      if (s.exclusive) {
        count.store(count.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
        light_fence();
        if (!writer_.load(std::memory_order_acquire)) return;
        count.store(count.load(std::memory_order_relaxed) - 1, std::memory_order_release);
        writer_.wait(true, std::memory_order_acquire);
        continue;
      }
#endif
      count.fetch_add(1, std::memory_order_seq_cst);
      if (!writer_.load(std::memory_order_seq_cst)) return;
      count.fetch_sub(1, std::memory_order_release);
      writer_.wait(true, std::memory_order_acquire);
    }
  }
  void unlock_shared() noexcept {
    const StripeSlot& s = this_thread_stripe();
    std::atomic<std::uint32_t>& count = readers_[s.index].count;
#ifndef STAMPEDE_TSAN
    if (s.exclusive) {
      count.store(count.load(std::memory_order_relaxed) - 1, std::memory_order_release);
      return;
    }
#endif
    count.fetch_sub(1, std::memory_order_release);
  }
  void lock() {
    writers_.lock();
    writer_.store(true, std::memory_order_seq_cst);
#ifndef STAMPEDE_TSAN
    heavy_fence();  // pairs with the readers' light_fence()
#endif
    for (auto& r : readers_) {
      while (r.count.load(std::memory_order_seq_cst) != 0) std::this_thread::yield();
    }
  }
  void unlock() noexcept {
    writer_.store(false, std::memory_order_release);
    writer_.notify_all();
    writers_.unlock();
  }

 private:
  struct alignas(kCacheLine) Slot {
    std::atomic<std::uint32_t> count{0};
  };
  std::array<Slot, kStripes> readers_{};
  alignas(kCacheLine) std::atomic<bool> writer_{false};
  std::mutex writers_;
};

}  // namespace stampede::detail
