#include "stampede/detail/asymmetric_fence.hpp"

#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace stampede::detail {

std::atomic<int> fence_mode{0};

namespace {

long membarrier(int cmd) noexcept { return ::syscall(SYS_membarrier, cmd, 0U, 0); }

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

int decide_fence_mode() noexcept {
  static const int mode = [] {
    const int m = probe();
    fence_mode.store(m, std::memory_order_release);
    return m;
  }();
  return mode;
}

#ifndef STAMPEDE_TSAN

void heavy_fence() noexcept {
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (!asymmetric_fences()) return;
  if (membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0) return;
  // The private command fails only with EPERM (not registered). Registration is per address space
  // and fork() copies it, so this is not expected; if the kernel refuses anyway, register again,
  // and as the last resort use the global command: it needs no registration and its only error
  // (EINVAL, unsupported on nohz_full kernels) was ruled out by probe()'s query.
  if (membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0 &&
      membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0) {
    return;
  }
  membarrier(MEMBARRIER_CMD_GLOBAL);
}

#endif

}  // namespace stampede::detail
