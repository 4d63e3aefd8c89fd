// stampede/detail/read_mostly_mutex.hpp: a reader-writer lock whose readers do not share a line.
//
// std::shared_mutex makes every reader write the same word, so two cores reading one hot key
// bounce that cache line between them and scale worse than one core. Here each reader thread
// counts itself in its own stripe (detail::this_thread_stripe()); a writer raises a flag and
// waits for every stripe to drain. Readers are cheap and independent; writers are rare and pay
// O(kStripes). (The "big reader" lock of the Linux kernel; folly's SharedMutex has a similar
// deferred-reader path.)
//
// Memory ordering: a reader's increment of its stripe and its load of `writer_` are seq_cst, as
// are the writer's store of `writer_` and its loads of the stripes. In the single total order either
// the writer sees the reader's increment (and waits for its release-decrement) or the reader sees
// `writer_ == true` (and backs off before touching the data). This is Dekker's pattern; it needs
// seq_cst on both sides, acquire/release alone would allow both to miss each other.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <thread>

#include "stampede/detail/counters.hpp"

namespace stampede::detail {

/// Meets the SharedMutex named requirements for lock()/unlock()/lock_shared()/unlock_shared().
/// A thread must not hold it shared twice (no recursion) nor upgrade. Thread-safe.
class ReadMostlyMutex {
 public:
  void lock_shared() noexcept {
    auto& slot = readers_[this_thread_stripe()].count;
    for (;;) {
      slot.fetch_add(1, std::memory_order_seq_cst);
      if (!writer_.load(std::memory_order_seq_cst)) return;
      slot.fetch_sub(1, std::memory_order_release);
      writer_.wait(true, std::memory_order_acquire);
    }
  }
  void unlock_shared() noexcept {
    readers_[this_thread_stripe()].count.fetch_sub(1, std::memory_order_release);
  }
  void lock() {
    writers_.lock();
    writer_.store(true, std::memory_order_seq_cst);
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
