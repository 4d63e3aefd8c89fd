// Tests of detail::light_fence()/heavy_fence(): one decision per process, and a heavy fence that
// still works in a fork()ed child. That the pair excludes a reader from a write is tested through
// detail::ReadMostlyMutex (read_mostly_mutex_test.cpp).
#include "stampede/detail/asymmetric_fence.hpp"

#include <gtest/gtest.h>
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
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

// Runs `body` in a fork()ed child, so that what it does to the fences stays there.
// @return the child's exit status (body's return value), or -1 if it did not exit.
template <class Body>
int in_child(Body body) {
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(body());
  if (pid < 0) return -1;
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return -1;
  return WEXITSTATUS(status);
}

#ifndef STAMPEDE_TSAN
long failing_membarrier(int /*command*/) {
  errno = EPERM;
  return -1;
}
#endif

// A seccomp filter installed after start-up makes every membarrier(2) call fail (EPERM) while the
// readers keep their compiler barrier: heavy_fence() must still make every running thread of the
// process execute a barrier, by another means, and the readers must go back to real fences.
TEST(AsymmetricFence, WhenMembarrierStartsFailingTheHeavyFenceFallsBackToAnotherProcessWideBarrier) {
#ifdef STAMPEDE_TSAN
  GTEST_SKIP() << "ThreadSanitizer builds have no heavy_fence() (nor fork() of a threaded process)";
#else
  if (!detail::asymmetric_fences()) GTEST_SKIP() << "membarrier's private expedited command is unavailable";
  const int status = in_child([] {
    const std::uint64_t before = detail::heavy_fence_fallbacks();
    detail::set_membarrier_for_testing(failing_membarrier);
    detail::heavy_fence();
    detail::heavy_fence();
    if (detail::heavy_fence_fallbacks() != before + 2) return 1;
    if (detail::asymmetric_fences()) return 2;
    return 0;
  });
  EXPECT_NE(status, 1) << "a heavy fence without membarrier made no other barrier";
  EXPECT_NE(status, 2) << "the readers kept a compiler barrier after membarrier failed";
  EXPECT_EQ(status, 0);
#endif
}

// The store-buffering litmus test of the pair, with membarrier failing from the start: a reader
// stores x then (light fence) loads y, the writer stores y then (heavy fence) loads x; both loads
// seeing 0 is what the fences forbid.
TEST(AsymmetricFence, WithMembarrierFailingTheFencesStillForbidStoreBuffering) {
#ifdef STAMPEDE_TSAN
  GTEST_SKIP() << "ThreadSanitizer builds have no fences";
#else
  if (!detail::asymmetric_fences()) GTEST_SKIP() << "membarrier's private expedited command is unavailable";
  constexpr int kRounds = 1000;  // each heavy fence is a TLB shootdown here: milliseconds on a loaded VM
  const int violations = in_child([] {
    detail::set_membarrier_for_testing(failing_membarrier);
    std::atomic<int> x{0}, y{0}, round{-1}, done{0}, reader_saw{0};
    int seen = 0;
    std::thread reader([&] {
      for (int i = 0; i < kRounds; ++i) {
        while (round.load(std::memory_order_acquire) != i) {
        }
        x.store(1, std::memory_order_relaxed);
        detail::light_fence();
        reader_saw.store(y.load(std::memory_order_relaxed), std::memory_order_relaxed);
        done.fetch_add(1, std::memory_order_acq_rel);
      }
    });
    for (int i = 0; i < kRounds; ++i) {
      x.store(0, std::memory_order_relaxed);
      y.store(0, std::memory_order_relaxed);
      round.store(i, std::memory_order_release);
      y.store(1, std::memory_order_relaxed);
      detail::heavy_fence();
      const int writer_saw = x.load(std::memory_order_relaxed);
      while (done.load(std::memory_order_acquire) != i + 1) {
      }
      if (writer_saw == 0 && reader_saw.load(std::memory_order_relaxed) == 0) ++seen;
    }
    reader.join();
    return std::min(seen, 100);
  });
  EXPECT_EQ(violations, 0) << "rounds (of " << kRounds << ", counted up to 100) where both loads saw 0";
#endif
}

}  // namespace
