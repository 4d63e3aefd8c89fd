// Tests of detail::light_fence()/heavy_fence(): one decision per process, and a heavy fence that
// still works in a fork()ed child. That the pair excludes a reader from a write is tested through
// detail::ReadMostlyMutex (read_mostly_mutex_test.cpp).
#include "stampede/detail/asymmetric_fence.hpp"

#include <gtest/gtest.h>
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <latch>
#include <thread>
#include <vector>

#include "stampede/detail/sanitizers.hpp"

namespace {

namespace detail = stampede::detail;

TEST(AsymmetricFence, EveryThreadGetsTheSameDecision) {
  constexpr int kThreads = 8;
  std::latch start(kThreads);
  std::atomic<int> asymmetric{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      start.arrive_and_wait();
      if (detail::asymmetric_fences()) asymmetric.fetch_add(1);
#ifndef STAMPEDE_TSAN
      detail::light_fence();
      detail::heavy_fence();
#endif
    });
  }
  for (auto& t : threads) t.join();
  const int mode = detail::fence_mode.load();
  ASSERT_TRUE(mode == 1 || mode == 2) << mode;
  EXPECT_EQ(asymmetric.load(), mode == 2 ? kThreads : 0);
}

// heavy_fence() relies on the child keeping the parent's membarrier registration (it re-registers
// if not, but readers in the child would otherwise be unprotected between fork() and that call).
TEST(AsymmetricFence, AForkedChildKeepsThePrivateExpeditedRegistration) {
#ifdef STAMPEDE_TSAN
  GTEST_SKIP() << "ThreadSanitizer does not support fork() of a multi-threaded process";
#endif
  if (!detail::asymmetric_fences()) GTEST_SKIP() << "membarrier's private expedited command is unavailable";
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // Not heavy_fence(): it would register again and hide a lost registration.
    const long r = ::syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0U, 0);
    ::_exit(r == 0 ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "membarrier(PRIVATE_EXPEDITED) failed in the child";
}

}  // namespace
