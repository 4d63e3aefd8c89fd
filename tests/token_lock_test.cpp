// MemoryTokenLock and LockLease behaviours beyond the backend-agnostic lock_conformance.hpp suite:
// token uniqueness across fork(), mutual exclusion under contention, clock-driven expiry.
#include "stampede/token_lock.hpp"

#include <gtest/gtest.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <future>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "stampede/clock.hpp"
#include "stampede/detail/counters.hpp"
#include "stampede/memory.hpp"
#include "support/test_support.hpp"

namespace {

using namespace std::chrono_literals;

std::string take_token(stampede::TokenLock& lock, const std::string& key) {
  auto t = lock.try_acquire(key, 1h);
  if (!t) return {};
  lock.release(key, t->token);
  return t->token;
}

TEST(MemoryTokenLockTest, TokensOfAForkedChildDifferFromTheParents) {
  constexpr int kTokens = 200;
  stampede::MemoryTokenLock lock;
  // Use the generator before forking, so that a user-space generator copied into the child would
  // continue from the same state as the parent's.
  for (int i = 0; i < 10; ++i) ASSERT_FALSE(take_token(lock, "warm").empty());

  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  std::fflush(nullptr);  // the child must not flush the parent's buffered output a second time
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(fds[0]);
    int status = 0;
    for (int i = 0; i < kTokens && status == 0; ++i) {
      const std::string token = take_token(lock, "k");
      std::size_t done = 0;
      while (done < token.size()) {
        const ssize_t n = ::write(fds[1], token.data() + done, token.size() - done);
        if (n <= 0) {
          status = 1;
          break;
        }
        done += static_cast<std::size_t>(n);
      }
      if (token.size() != 32) status = 2;
    }
    ::close(fds[1]);
    ::_exit(status);  // no gtest teardown, no static destructors in the child
  }
  ::close(fds[1]);
  std::vector<std::string> parent;
  for (int i = 0; i < kTokens; ++i) parent.push_back(take_token(lock, "k"));

  std::string bytes;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n <= 0) break;
    bytes.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fds[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0);
  ASSERT_EQ(bytes.size(), static_cast<std::size_t>(kTokens) * 32);

  std::set<std::string> all(parent.begin(), parent.end());
  ASSERT_EQ(all.size(), static_cast<std::size_t>(kTokens));
  for (int i = 0; i < kTokens; ++i) {
    const std::string token = bytes.substr(static_cast<std::size_t>(i) * 32, 32);
    EXPECT_TRUE(stampede_test::is_token_format(token)) << token;
    EXPECT_TRUE(all.insert(token).second) << "token repeated across fork(): " << token;
  }
  EXPECT_EQ(all.size(), static_cast<std::size_t>(2 * kTokens));
}

TEST(MemoryTokenLockTest, ContendersNeverHoldTheLockTogether) {
  constexpr int kThreads = 4;
  constexpr int kRounds = 200;
  auto lock = std::make_shared<stampede::MemoryTokenLock>();
  std::atomic<int> inside{0};
  std::atomic<int> overlaps{0};
  std::atomic<int> held{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kRounds; ++i) {
        auto token = stampede::acquire(
            *lock, "k", 1h, {.timeout = stampede_test::kHangGuard, .retry = 1ms, .max_retry = 2ms});
        if (!token) {
          ADD_FAILURE() << "acquire timed out";
          return;
        }
        if (inside.fetch_add(1) != 0) overlaps.fetch_add(1);
        std::this_thread::yield();
        inside.fetch_sub(1);
        held.fetch_add(1);
        EXPECT_TRUE(lock->release("k", token->token));
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(overlaps.load(), 0);
  EXPECT_EQ(held.load(), kThreads * kRounds);
}

TEST(MemoryTokenLockTest, HolderReportsTheCurrentUnexpiredOwner) {
  auto clock = std::make_shared<stampede::ManualClock>();
  stampede::MemoryTokenLock lock(clock);
  EXPECT_EQ(lock.holder("k"), std::nullopt);
  auto t = lock.try_acquire("k", 10s);
  ASSERT_TRUE(t);
  EXPECT_EQ(lock.holder("k"), t->token);
  clock->advance(10s);
  EXPECT_EQ(lock.holder("k"), std::nullopt) << "an expired lease still reported as held";
  auto next = lock.try_acquire("k", 10s);
  ASSERT_TRUE(next);
  EXPECT_EQ(lock.holder("k"), next->token);
  EXPECT_TRUE(lock.release("k", next->token));
  EXPECT_EQ(lock.holder("k"), std::nullopt);
}

TEST(MemoryTokenLockTest, ExpiryFollowsTheInjectedClockExactly) {
  auto clock = std::make_shared<stampede::ManualClock>();
  stampede::MemoryTokenLock lock(clock);
  auto t = lock.try_acquire("k", 10s);
  ASSERT_TRUE(t);
  clock->advance(9999ms);
  EXPECT_FALSE(lock.try_acquire("k", 10s));
  EXPECT_TRUE(lock.renew("k", t->token, 10s));
  clock->advance(10s);  // exactly the renewed TTL: expired
  EXPECT_FALSE(lock.renew("k", t->token, 10s));
  EXPECT_FALSE(lock.release("k", t->token)) << "release of an expired lease reported success";
  EXPECT_TRUE(lock.try_acquire("k", 10s));
}

TEST(MemoryTokenLockTest, FencesComeFromOneCounterAcrossKeys) {
  stampede::MemoryTokenLock lock;
  const std::uint64_t a1 = lock.bump_fence("a");
  const std::uint64_t b1 = lock.bump_fence("b");
  auto a2 = lock.try_acquire("a", 1h);
  ASSERT_TRUE(a2);
  // Every fence is above every earlier one of any key: what MemoryStore's floors rely on.
  EXPECT_GT(b1, a1);
  EXPECT_GT(a2->fence, b1);
  EXPECT_THROW((void)lock.bump_fence(""), std::invalid_argument);
}

TEST(MemoryTokenLockTest, ASubscriptionFromBeforeAForkReturnsInTheChild) {
#ifdef STAMPEDE_TSAN
  GTEST_SKIP() << "ThreadSanitizer does not support starting threads after a multi-threaded fork";
#endif
  stampede::MemoryTokenLock lock;
  auto sub = lock.subscribe("k");
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // The subscription's stripe belongs to the parent's abandoned state: a spurious wake-up, at once.
    const bool woke = sub->wait_until(std::chrono::steady_clock::now() + stampede_test::kHangGuard);
    ::_exit(woke ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST(LockLeaseTest, WatchdogReportsLossWhenTheClockMovesPastTheLease) {
  auto clock = std::make_shared<stampede::ManualClock>();
  auto lock = std::make_shared<stampede::MemoryTokenLock>(clock);
  auto token = lock->try_acquire("k", 1s);
  ASSERT_TRUE(token);
  std::promise<void> lost;
  stampede::LockLease lease(lock, "k", *token, 1s,
                            {.enabled = true, .interval = 5ms, .on_lost = [&] { lost.set_value(); }});
  clock->advance(2s);
  ASSERT_EQ(lost.get_future().wait_for(stampede_test::kHangGuard), std::future_status::ready);
  EXPECT_TRUE(lease.lost());
  EXPECT_FALSE(lease.release());
}

TEST(LockLeaseTest, WatchdogKeepsALeaseAliveWhileTheClockMovesPastItsTtl) {
  auto clock = std::make_shared<stampede::ManualClock>();
  auto memory = std::make_shared<stampede::MemoryTokenLock>(clock);
  auto lock = std::make_shared<stampede_test::CountingLock>(memory);
  auto token = lock->try_acquire("k", 3s);
  ASSERT_TRUE(token);
  stampede::LockLease lease(lock, "k", *token, 3s, {.enabled = true, .interval = 1ms});
  for (int step = 1; step <= 10; ++step) {
    clock->advance(2s);  // 2 s of a 3 s lease
    // Two more completed renewals mean at least one read the clock after this step.
    const int seen = lock->renews();
    ASSERT_TRUE(stampede_test::eventually([&] { return lock->renews() >= seen + 2; }));
    ASSERT_EQ(memory->holder("k"), token->token) << "lease lapsed at step " << step;
  }
  // 20 s of clock time on a 3 s lease: only the renewals kept it.
  EXPECT_FALSE(memory->try_acquire("k", 1s));
  EXPECT_FALSE(lease.lost());
  EXPECT_TRUE(lease.release());
}

TEST(LockLeaseTest, MoveAssignmentReleasesTheLockItOwned) {
  auto lock = std::make_shared<stampede::MemoryTokenLock>();
  auto a = stampede::LockLease::acquire(lock, "a", 1h, {.timeout = 0ms});
  auto b = stampede::LockLease::acquire(lock, "b", 1h, {.timeout = 0ms});
  ASSERT_TRUE(a);
  ASSERT_TRUE(b);
  *a = std::move(*b);
  EXPECT_EQ(a->key(), "b");
  EXPECT_TRUE(a->owns_lock());
  auto again = lock->try_acquire("a", 1h);
  EXPECT_TRUE(again) << "the overwritten lease did not release its lock";
  EXPECT_FALSE(lock->try_acquire("b", 1h));
}

TEST(LockLeaseTest, AcquireReturnsEmptyOnTimeout) {
  auto lock = std::make_shared<stampede::MemoryTokenLock>();
  auto held = lock->try_acquire("k", 1h);
  ASSERT_TRUE(held);
  EXPECT_FALSE(
      stampede::LockLease::acquire(lock, "k", 1h, {.timeout = 20ms, .retry = 5ms, .max_retry = 5ms}));
  EXPECT_THROW((void)stampede::LockLease::acquire(nullptr, "k", 1h), std::invalid_argument);
}

}  // namespace
