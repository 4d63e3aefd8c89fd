#include "stampede/detail/asymmetric_fence.hpp"

#include <linux/membarrier.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <mutex>

namespace stampede::detail {

std::atomic<int> fence_mode{0};

namespace {

std::atomic<long (*)(int)> membarrier_seam{nullptr};
std::atomic<std::uint64_t> fallbacks{0};
// Set once membarrier has failed in heavy_fence(): from then on every heavy fence is the fallback.
std::atomic<bool> membarrier_failed{false};

long membarrier(int cmd) noexcept {
  if (long (*seam)(int) = membarrier_seam.load(std::memory_order_acquire)) return seam(cmd);
  return ::syscall(SYS_membarrier, cmd, 0U, 0);
}

// Asymmetric only when both the private expedited command (registered here) and the global command
// (the fallback of heavy_fence(), which needs no registration) are available.
int probe() noexcept {
  const long supported = membarrier(MEMBARRIER_CMD_QUERY);
  if (supported < 0) return 1;
  const long needed = MEMBARRIER_CMD_PRIVATE_EXPEDITED | MEMBARRIER_CMD_GLOBAL;
  if ((supported & needed) != needed) return 1;
  if (membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) != 0) return 1;
  if (membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0) return 1;
  return 2;
}

}  // namespace

void set_membarrier_for_testing(long (*call)(int command)) noexcept {
  membarrier_seam.store(call, std::memory_order_release);
}

std::uint64_t heavy_fence_fallbacks() noexcept { return fallbacks.load(std::memory_order_relaxed); }

int decide_fence_mode() noexcept {
  static const int mode = [] {
    const int m = probe();
    fence_mode.store(m, std::memory_order_release);
    return m;
  }();
  return mode;
}

#ifndef STAMPEDE_TSAN

namespace {

// A barrier on every CPU that runs a thread of this process, without membarrier. Taking write
// permission away from a page that is present in the page tables obliges the kernel to flush it
// from the TLB of every CPU that may cache this address space before mprotect() returns; on x86
// it does so by an inter-processor interrupt to each CPU running one of the process's threads
// and waits for all of them, and an interrupt is a full barrier on the CPU it interrupts. A
// thread that is not running passes the kernel's own barriers when it is switched back in.
// @return false if it could not be done (the page could not be mapped or protected).
bool tlb_shootdown_barrier() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  static const long page_size = ::sysconf(_SC_PAGESIZE);
  static void* const page = [] {
    void* p = ::mmap(nullptr, static_cast<std::size_t>(page_size), PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? nullptr : p;
  }();
  static std::mutex mu;  // one shootdown at a time: each needs the page writable, then read-only
  if (page == nullptr) return false;
  std::lock_guard lock(mu);
  const auto size = static_cast<std::size_t>(page_size);
  if (::mprotect(page, size, PROT_READ | PROT_WRITE) != 0) return false;
  *static_cast<volatile char*>(page) = 0;  // present and writable in the page tables
  return ::mprotect(page, size, PROT_READ) == 0;
#else
  // Elsewhere (arm64: TLB invalidations are broadcast by the hardware, no CPU is interrupted) an
  // mprotect() is no barrier on the other CPUs.
  return false;
#endif
}

}  // namespace

void heavy_fence() noexcept {
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (!asymmetric_fences() && !membarrier_failed.load(std::memory_order_acquire)) return;
  if (!membarrier_failed.load(std::memory_order_acquire)) {
    if (membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0) return;
    // The private command fails with EPERM when not registered. Registration is per address
    // space and fork() copies it, so this is not expected; if the kernel refuses anyway, register
    // again.
    if (membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0 &&
        membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0) {
      return;
    }
    // membarrier stopped working (e.g. a seccomp filter installed after start-up). From now on
    // the readers use seq_cst fences (light_fence() reads the mode on every call), and every heavy
    // fence still makes the process-wide barrier below, for a reader that read the mode before
    // this store and has not passed its compiler barrier yet.
    membarrier_failed.store(true, std::memory_order_release);
    fence_mode.store(1, std::memory_order_seq_cst);
    std::atomic_thread_fence(std::memory_order_seq_cst);
  }
  fallbacks.fetch_add(1, std::memory_order_relaxed);
  if (tlb_shootdown_barrier()) return;
  // No other process-wide barrier here: the global command needs no registration (it waits for a
  // scheduler grace period, milliseconds), if the kernel still allows it.
  (void)membarrier(MEMBARRIER_CMD_GLOBAL);
}

#endif

}  // namespace stampede::detail
