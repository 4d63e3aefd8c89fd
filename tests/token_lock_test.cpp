// TokenLock's argument checks, and MemoryTokenLock and LockLease behaviours beyond the
// backend-agnostic conformance/lock_conformance.hpp suite: token uniqueness across fork(), mutual exclusion
// under contention, clock-driven expiry, the lease renewer.
#include "stampede/token_lock.hpp"

#include <gtest/gtest.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "stampede/clock.hpp"
#include "stampede/detail/lease_renewer.hpp"
#include "stampede/detail/sanitizers.hpp"
#include "stampede/errors.hpp"
#include "stampede/lease.hpp"
#include "stampede/memory/token_lock.hpp"
#include "support/test_support.hpp"

namespace {

using namespace std::chrono_literals;

std::string take_token(stampede::TokenLock& lock, const std::string& key) {
  auto t = lock.try_acquire(key, 1h);
  if (!t) return {};
  lock.release(key, t->token);
  return t->token;
}

// ---- TokenLock: the argument checks of the public methods ---------------------------------------

/// A TokenLock backend that counts how often its do_ methods are reached. Thread-compatible.
class CountingBackend final : public stampede::TokenLock {
 public:
  int reached = 0;

 private:
  std::optional<stampede::LockToken> do_try_acquire(std::string_view, std::chrono::milliseconds) override {
    ++reached;
    return stampede::LockToken{"t", 1};
  }
  bool do_release(std::string_view, std::string_view) override { return ++reached > 0; }
  bool do_renew(std::string_view, std::string_view, std::chrono::milliseconds) override {
    return ++reached > 0;
  }
  std::uint64_t do_bump_fence(std::string_view) override { return static_cast<std::uint64_t>(++reached); }
  std::unique_ptr<stampede::Subscription> do_subscribe(std::string_view) override {
    ++reached;
    return nullptr;
  }
  void do_notify(std::string_view) override { ++reached; }
};

TEST(TokenLockTest, ABackendNeverSeesAnEmptyKeyOrANonPositiveTtl) {
  CountingBackend lock;
  EXPECT_THROW((void)lock.try_acquire("", 1s), std::invalid_argument);
  EXPECT_THROW((void)lock.try_acquire("k", 0s), std::invalid_argument);
  EXPECT_THROW((void)lock.release("", "t"), std::invalid_argument);
  EXPECT_THROW((void)lock.renew("", "t", 1s), std::invalid_argument);
  EXPECT_THROW((void)lock.renew("k", "t", -1s), std::invalid_argument);
  EXPECT_THROW((void)lock.bump_fence(""), std::invalid_argument);
  EXPECT_THROW((void)lock.subscribe(""), std::invalid_argument);
  EXPECT_THROW(lock.notify(""), std::invalid_argument);
  EXPECT_EQ(lock.reached, 0) << "a bad argument reached the backend";
  // Good arguments do reach it, once per call.
  EXPECT_TRUE(lock.try_acquire("k", 1s));
  EXPECT_TRUE(lock.release("k", "t"));
  EXPECT_TRUE(lock.renew("k", "t", 1s));
  EXPECT_EQ(lock.bump_fence("k"), 4u);
  EXPECT_EQ(lock.subscribe("k"), nullptr);
  lock.notify("k");
  EXPECT_EQ(lock.reached, 6);
}

// ---- MemoryTokenLock ------------------------------------------------------------------------------

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

// ---- LeaseRenewer: slow renewals, transient failures, released leases, fork -------------------

/// A TokenLock that forwards to another, counts renew() calls per key and can steer each key's
/// renewals: block them on a gate (after opening an "entered" gate), make them throw backend_error
/// a number of times (or always), or make them refuse (return false). Thread-safe; set the plans
/// before a renewal of the key can run.
class SteeredLock final : public stampede::TokenLock {
 public:
  explicit SteeredLock(std::shared_ptr<stampede::TokenLock> inner) : inner_(std::move(inner)) {}

  /// Renewals of `key` open `entered`, then wait for `proceed` to open.
  void block(const std::string& key, stampede_test::Gate* entered, stampede_test::Gate* proceed) {
    std::lock_guard l(mu_);
    plans_[key].entered = entered;
    plans_[key].proceed = proceed;
  }
  /// The next `n` renewals of `key` throw backend_error; n < 0: every one does.
  void fail(const std::string& key, int n) {
    std::lock_guard l(mu_);
    plans_[key].throws = n;
  }
  /// Renewals of `key` return false without reaching the inner lock.
  void refuse(const std::string& key) {
    std::lock_guard l(mu_);
    plans_[key].refuse = true;
  }
  /// @return renew() calls for `key` so far (counted on entry).
  int renews(const std::string& key) const {
    std::lock_guard l(mu_);
    auto it = calls_.find(key);
    return it == calls_.end() ? 0 : it->second;
  }

 private:
  std::optional<stampede::LockToken> do_try_acquire(std::string_view key,
                                                    std::chrono::milliseconds ttl) override {
    return inner_->try_acquire(key, ttl);
  }
  bool do_release(std::string_view key, std::string_view token) override {
    return inner_->release(key, token);
  }
  bool do_renew(std::string_view key, std::string_view token, std::chrono::milliseconds ttl) override {
    Plan plan;
    bool throw_now = false;
    {
      std::lock_guard l(mu_);
      ++calls_[std::string(key)];
      auto it = plans_.find(std::string(key));
      if (it != plans_.end()) {
        plan = it->second;
        if (it->second.throws != 0) {
          throw_now = true;
          if (it->second.throws > 0) --it->second.throws;
        }
      }
    }
    if (plan.entered != nullptr) plan.entered->open();
    if (plan.proceed != nullptr) plan.proceed->wait();
    if (throw_now) throw stampede::backend_error("injected renew failure");
    if (plan.refuse) return false;
    return inner_->renew(key, token, ttl);
  }
  std::uint64_t do_bump_fence(std::string_view key) override { return inner_->bump_fence(key); }
  std::unique_ptr<stampede::Subscription> do_subscribe(std::string_view key) override {
    return inner_->subscribe(key);
  }
  void do_notify(std::string_view key) override { inner_->notify(key); }

  struct Plan {
    stampede_test::Gate* entered = nullptr;
    stampede_test::Gate* proceed = nullptr;
    int throws = 0;
    bool refuse = false;
  };
  mutable std::mutex mu_;
  std::map<std::string, Plan> plans_;
  std::map<std::string, int> calls_;
  std::shared_ptr<stampede::TokenLock> inner_;
};

/// A watched lease on `key` of `lock`, taken at once (the key must be free).
stampede::LockLease watched_lease(const std::shared_ptr<stampede::TokenLock>& lock, const std::string& key,
                                  std::chrono::milliseconds ttl, std::chrono::milliseconds interval,
                                  std::function<void()> on_lost = {}) {
  auto token = lock->try_acquire(key, ttl);
  if (!token) throw std::logic_error("watched_lease: " + key + " is taken");
  return stampede::LockLease(lock, key, *token, ttl,
                             {.enabled = true, .interval = interval, .on_lost = std::move(on_lost)});
}

TEST(LeaseRenewerTest, OtherLeasesAreRenewedWhileOneRenewalIsStuck) {
  // The clock never moves, so every lease stays valid in the lock; only the renewer is observed.
  auto memory = std::make_shared<stampede::MemoryTokenLock>(std::make_shared<stampede::ManualClock>());
  auto lock = std::make_shared<SteeredLock>(memory);
  stampede_test::Gate stuck_entered;
  stampede_test::Gate unstick;
  lock->block("slow", &stuck_entered, &unstick);

  stampede::LockLease slow = watched_lease(lock, "slow", 30ms, 1ms);
  std::vector<stampede::LockLease> others;
  for (const char* key : {"a", "b", "c"}) others.push_back(watched_lease(lock, key, 30ms, 1ms));
  stampede_test::OpenOnExit unstick_on_exit(unstick);  // before the leases' destructors wait for it

  ASSERT_TRUE(stuck_entered.wait_for());
  for (const char* key : {"a", "b", "c"}) {
    const int seen = lock->renews(key);
    EXPECT_TRUE(stampede_test::eventually([&] { return lock->renews(key) >= seen + 3; }))
        << key << " was not renewed while the renewal of another lease was stuck";
  }
  EXPECT_EQ(lock->renews("slow"), 1);
  EXPECT_FALSE(slow.lost());
  unstick.open();
  EXPECT_TRUE(slow.release());
  for (auto& lease : others) {
    EXPECT_FALSE(lease.lost());
    EXPECT_TRUE(lease.release());
  }
}

TEST(LeaseRenewerTest, RenewalsThatThrowAreRetriedAndTheLeaseIsKept) {
  auto memory = std::make_shared<stampede::MemoryTokenLock>(std::make_shared<stampede::ManualClock>());
  auto lock = std::make_shared<SteeredLock>(memory);
  lock->fail("k", 3);
  std::atomic<int> lost_calls{0};
  stampede::LockLease lease = watched_lease(lock, "k", 1h, 1ms, [&] { lost_calls.fetch_add(1); });
  // Three failures, then at least two successful renewals (or a loss, which fails below).
  ASSERT_TRUE(stampede_test::eventually([&] { return lock->renews("k") >= 5 || lease.lost(); }));
  EXPECT_FALSE(lease.lost()) << "a renewal that threw (state unknown) gave the lease up";
  EXPECT_EQ(lost_calls.load(), 0);
  EXPECT_EQ(memory->holder("k"), lease.token().token);
  EXPECT_TRUE(lease.release());
}

TEST(LeaseRenewerTest, RenewalsThatKeepThrowingLoseTheLeaseAtItsKnownExpiry) {
  auto memory = std::make_shared<stampede::MemoryTokenLock>(std::make_shared<stampede::ManualClock>());
  auto lock = std::make_shared<SteeredLock>(memory);
  lock->fail("k", -1);
  constexpr auto kTtl = 300ms;
  std::promise<std::chrono::steady_clock::time_point> lost_at;
  const auto before = std::chrono::steady_clock::now();  // the lease's known expiry is >= before + kTtl
  stampede::LockLease lease =
      watched_lease(lock, "k", kTtl, 20ms, [&] { lost_at.set_value(std::chrono::steady_clock::now()); });
  auto lost = lost_at.get_future();
  ASSERT_EQ(lost.wait_for(stampede_test::kHangGuard), std::future_status::ready);
  const auto lost_after = std::chrono::duration_cast<std::chrono::milliseconds>(lost.get() - before);
  EXPECT_GE(lost_after.count(), kTtl.count()) << "declared lost before the lease's known expiry (ms)";
  EXPECT_GE(lock->renews("k"), 2) << "a renewal that threw was not retried";
  EXPECT_TRUE(lease.lost());
}

TEST(LeaseRenewerTest, RefusedRenewalLosesTheLeaseAtOnce) {
  auto memory = std::make_shared<stampede::MemoryTokenLock>(std::make_shared<stampede::ManualClock>());
  auto lock = std::make_shared<SteeredLock>(memory);
  lock->refuse("k");
  std::promise<void> lost;
  // The known expiry is an hour away: only the refusal can make the lease lost within the guard.
  stampede::LockLease lease = watched_lease(lock, "k", 1h, 1ms, [&] { lost.set_value(); });
  ASSERT_EQ(lost.get_future().wait_for(stampede_test::kHangGuard), std::future_status::ready);
  EXPECT_TRUE(lease.lost());
  EXPECT_EQ(lock->renews("k"), 1) << "a refused renewal was retried";
}

TEST(LeaseRenewerTest, ReleasedLeasesLeaveTheRenewerAtOnce) {
  constexpr int kCycles = 20000;
  auto lock = std::make_shared<stampede::MemoryTokenLock>();
  const std::size_t before = stampede::detail::lease_renewer_pending();
  {
    auto held = stampede::LockLease::acquire(lock, "held", 30min, {.timeout = 0ms}, {.enabled = true});
    ASSERT_TRUE(held);
    EXPECT_EQ(stampede::detail::lease_renewer_pending(), before + 1);
  }
  for (int i = 0; i < kCycles; ++i) {
    auto lease = stampede::LockLease::acquire(lock, "k", 30min, {.timeout = 0ms}, {.enabled = true});
    ASSERT_TRUE(lease);
    EXPECT_TRUE(lease->release());
  }
  EXPECT_EQ(stampede::detail::lease_renewer_pending(), before)
      << "released leases are still held by the renewer";
}

TEST(LeaseRenewerTest, AForkedChildRenewsItsOwnLeasesAndLeavesTheParentsAlone) {
#if defined(STAMPEDE_TSAN)
  GTEST_SKIP() << "ThreadSanitizer cannot start threads in a child of a multi-threaded fork()";
#else
  auto memory = std::make_shared<stampede::MemoryTokenLock>(std::make_shared<stampede::ManualClock>());
  auto lock = std::make_shared<SteeredLock>(memory);
  stampede_test::Gate entered;
  stampede_test::Gate proceed;
  lock->block("parent", &entered, &proceed);
  stampede::LockLease parent = watched_lease(lock, "parent", 1h, 1ms);
  stampede_test::OpenOnExit proceed_on_exit(proceed);
  // fork() while a renewer thread is inside the parent's lease (holding its state).
  ASSERT_TRUE(entered.wait_for());

  std::fflush(nullptr);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::alarm(60);  // hang guard: a deadlock in the child ends it with SIGALRM
    // The inherited lease is the parent's: the child neither releases nor renews it. (The child's
    // copy of an in-process lock has no holders at all: MemoryForkTest covers that.)
    if (parent.release()) ::_exit(1);
    // A lease of the child's own is renewed by the child's renewer.
    stampede::LockLease own = watched_lease(lock, "child", 1h, 1ms);
    if (!stampede_test::eventually([&] { return lock->renews("child") >= 3; })) ::_exit(3);
    if (own.lost() || !own.release()) ::_exit(4);
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "child killed by signal " << (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  EXPECT_EQ(WEXITSTATUS(status), 0);
  proceed.open();
  EXPECT_FALSE(parent.lost());
  EXPECT_TRUE(parent.release());
#endif
}

}  // namespace
