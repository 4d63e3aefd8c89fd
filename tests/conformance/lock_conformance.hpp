// tests/conformance/lock_conformance.hpp: the behaviours every TokenLock backend must have, as one
// typed suite (one topic: the lock's contract): a held lock excludes others until it is released or
// expires; only its token releases or renews it; fences grow with every acquire and bump_fence();
// tokens are unique; acquire() waits (woken by a release) and times out; subscriptions see
// signals; LockLease releases and its watchdog renews, and reports a lost lock; bad arguments throw.
//
// How to add a backend: write a factory type and instantiate the suite with it in your test file.
//
//   struct MyFactory {
//     // A lock over a keyspace no other test shares (e.g. a unique key prefix per call).
//     static std::shared_ptr<stampede::TokenLock> lock(std::shared_ptr<const stampede::Clock> clock);
//     // true if lock expiry follows `clock` (in process); false if it is server time (Redis).
//     static constexpr bool kClockDrivesLockExpiry = false;
//     // For the cache suites (cache_fixture.hpp):
//     template <class T> static stampede::Backend<T> backend(std::shared_ptr<const stampede::Clock>);
//   };
//   INSTANTIATE_TYPED_TEST_SUITE_P(My, LockConformance, MyFactory);
//
// Tests that need an expired lock move the clock when kClockDrivesLockExpiry, and otherwise take a
// short real lease and wait for it in a loop bounded by kHangGuard; nothing asserts how long anything
// took. The watchdog renews on real time (the steady clock). Whether it kept a lease past its TTL is
// judged on the test clock where that drives lock expiry; elsewhere (Redis: server time) by one
// real-time test whose 3 s lease leaves every renewal seconds of margin. The other watchdog tests
// use leases whose outcome does not depend on how fast the renewer runs.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "stampede/clock.hpp"
#include "stampede/errors.hpp"
#include "stampede/lease.hpp"
#include "stampede/token_lock.hpp"
#include "support/test_support.hpp"

namespace lock_conformance {

/// A TokenLock that forwards to another, except that its first `failures` renew() calls throw
/// backend_error without reaching it (a server that failed mid-call). Counts the renewals that
/// reached the inner lock and succeeded. Thread-safe.
class FailingRenewals final : public stampede::TokenLock {
 public:
  FailingRenewals(std::shared_ptr<stampede::TokenLock> inner, int failures)
      : inner_(std::move(inner)), failures_left_(failures) {}

 private:
  std::optional<stampede::LockToken> do_try_acquire(std::string_view key,
                                                    std::chrono::milliseconds ttl) override {
    return inner_->try_acquire(key, ttl);
  }
  bool do_release(std::string_view key, std::string_view token) override {
    return inner_->release(key, token);
  }
  bool do_renew(std::string_view key, std::string_view token, std::chrono::milliseconds ttl) override {
    if (failures_left_.fetch_sub(1, std::memory_order_acq_rel) > 0) {
      throw stampede::backend_error("injected renew failure");
    }
    const bool renewed = inner_->renew(key, token, ttl);
    if (renewed) renewed_.fetch_add(1, std::memory_order_acq_rel);
    return renewed;
  }
  std::uint64_t do_bump_fence(std::string_view key) override { return inner_->bump_fence(key); }
  std::unique_ptr<stampede::Subscription> do_subscribe(std::string_view key) override {
    return inner_->subscribe(key);
  }
  void do_notify(std::string_view key) override { inner_->notify(key); }

 public:
  /// @return renewals that the inner lock accepted.
  int renewed() const noexcept { return renewed_.load(std::memory_order_acquire); }

 private:
  std::shared_ptr<stampede::TokenLock> inner_;
  std::atomic<int> failures_left_;
  std::atomic<int> renewed_{0};
};

}  // namespace lock_conformance

template <class Factory>
class LockConformance : public ::testing::Test {
 protected:
  /// Starts at the real time, so a backend that stores absolute times sees plausible ones.
  std::shared_ptr<stampede::ManualClock> clock_ =
      std::make_shared<stampede::ManualClock>(std::chrono::system_clock::now());
  std::shared_ptr<stampede::TokenLock> lock_ = Factory::lock(clock_);

  /// Takes `key` with a lease that is then made to expire (moving the clock, or a 50 ms real lease).
  /// @return the expired lease's token.
  stampede::LockToken take_and_expire(const std::string& key) {
    if constexpr (Factory::kClockDrivesLockExpiry) {
      auto token = lock_->try_acquire(key, std::chrono::milliseconds(1000));
      EXPECT_TRUE(token.has_value());
      clock_->advance(std::chrono::milliseconds(1001));
      return token.value_or(stampede::LockToken{});
    } else {
      auto token = lock_->try_acquire(key, std::chrono::milliseconds(50));
      EXPECT_TRUE(token.has_value());
      return token.value_or(stampede::LockToken{});
    }
  }

  /// Takes `key` once the previous holder's lease has expired: at once when the clock drives
  /// expiry, else by a blocking acquire bounded by the hang guard.
  std::optional<stampede::LockToken> take_after_expiry(const std::string& key,
                                                       std::chrono::milliseconds ttl) {
    if constexpr (Factory::kClockDrivesLockExpiry) {
      return lock_->try_acquire(key, ttl);
    } else {
      return stampede::acquire(*lock_, key, ttl,
                               {.timeout = stampede_test::kHangGuard,
                                .retry = std::chrono::milliseconds(5),
                                .max_retry = std::chrono::milliseconds(20)});
    }
  }
};

TYPED_TEST_SUITE_P(LockConformance);

TYPED_TEST_P(LockConformance, HeldLockCannotBeTakenAndIsFreeAfterRelease) {
  auto a = this->lock_->try_acquire("k", std::chrono::hours(1));
  ASSERT_TRUE(a);
  EXPECT_TRUE(stampede_test::is_token_format(a->token)) << a->token;
  EXPECT_FALSE(this->lock_->try_acquire("k", std::chrono::hours(1)));
  EXPECT_TRUE(this->lock_->release("k", a->token));
  auto b = this->lock_->try_acquire("k", std::chrono::hours(1));
  ASSERT_TRUE(b);
  EXPECT_NE(a->token, b->token);
  EXPECT_TRUE(this->lock_->release("k", b->token));
}

TYPED_TEST_P(LockConformance, LocksOnDifferentKeysAreIndependent) {
  auto a = this->lock_->try_acquire("a", std::chrono::hours(1));
  auto b = this->lock_->try_acquire("b", std::chrono::hours(1));
  ASSERT_TRUE(a);
  ASSERT_TRUE(b);
  EXPECT_FALSE(this->lock_->release("a", b->token));
  EXPECT_TRUE(this->lock_->release("a", a->token));
  EXPECT_FALSE(this->lock_->try_acquire("b", std::chrono::hours(1)));
  EXPECT_TRUE(this->lock_->release("b", b->token));
}

TYPED_TEST_P(LockConformance, WrongTokenCannotReleaseOrRenew) {
  auto owner = this->lock_->try_acquire("k", std::chrono::hours(1));
  ASSERT_TRUE(owner);
  const std::string wrong(32, 'f');
  ASSERT_NE(owner->token, wrong);
  EXPECT_FALSE(this->lock_->release("k", wrong));
  EXPECT_FALSE(this->lock_->renew("k", wrong, std::chrono::hours(1)));
  EXPECT_FALSE(this->lock_->release("k", ""));
  // The failed attempts left the owner's lock in place.
  EXPECT_FALSE(this->lock_->try_acquire("k", std::chrono::hours(1)));
  EXPECT_TRUE(this->lock_->renew("k", owner->token, std::chrono::hours(1)));
  EXPECT_TRUE(this->lock_->release("k", owner->token));
  // Once released, the former owner's token is just another wrong token.
  EXPECT_FALSE(this->lock_->release("k", owner->token));
  EXPECT_FALSE(this->lock_->renew("k", owner->token, std::chrono::hours(1)));
}

TYPED_TEST_P(LockConformance, PreviousOwnerCannotReleaseOrRenewTheNextOwnersLock) {
  auto first = this->lock_->try_acquire("k", std::chrono::hours(1));
  ASSERT_TRUE(first);
  ASSERT_TRUE(this->lock_->release("k", first->token));
  auto second = this->lock_->try_acquire("k", std::chrono::hours(1));
  ASSERT_TRUE(second);
  EXPECT_FALSE(this->lock_->release("k", first->token));
  EXPECT_FALSE(this->lock_->renew("k", first->token, std::chrono::hours(1)));
  EXPECT_FALSE(this->lock_->try_acquire("k", std::chrono::hours(1)));
  EXPECT_TRUE(this->lock_->release("k", second->token));
}

TYPED_TEST_P(LockConformance, ExpiredLockCanBeTakenByAnotherAndTheOldTokenIsVoid) {
  const stampede::LockToken old = this->take_and_expire("k");
  auto next = this->take_after_expiry("k", std::chrono::hours(1));
  ASSERT_TRUE(next) << "an expired lock could not be taken";
  EXPECT_NE(next->token, old.token);
  EXPECT_GT(next->fence, old.fence);
  EXPECT_FALSE(this->lock_->renew("k", old.token, std::chrono::hours(1)));
  EXPECT_FALSE(this->lock_->release("k", old.token));
  EXPECT_FALSE(this->lock_->try_acquire("k", std::chrono::hours(1)))
      << "the old owner's release freed the lock";
  EXPECT_TRUE(this->lock_->release("k", next->token));
}

TYPED_TEST_P(LockConformance, RenewKeepsTheLockPastItsFirstTtl) {
  if constexpr (TypeParam::kClockDrivesLockExpiry) {
    auto t = this->lock_->try_acquire("k", std::chrono::seconds(10));
    ASSERT_TRUE(t);
    this->clock_->advance(std::chrono::seconds(8));
    ASSERT_TRUE(this->lock_->renew("k", t->token, std::chrono::seconds(10)));
    this->clock_->advance(std::chrono::seconds(8));  // 16 s after the acquire, 8 s after the renewal
    EXPECT_FALSE(this->lock_->try_acquire("k", std::chrono::seconds(10))) << "renew did not extend the lease";
    this->clock_->advance(std::chrono::seconds(3));  // 11 s after the renewal
    auto next = this->lock_->try_acquire("k", std::chrono::seconds(10));
    ASSERT_TRUE(next) << "the renewed lease never expired";
    EXPECT_TRUE(this->lock_->release("k", next->token));
  } else {
    auto t = this->lock_->try_acquire("k", std::chrono::milliseconds(100));
    ASSERT_TRUE(t);
    ASSERT_TRUE(this->lock_->renew("k", t->token, std::chrono::hours(1)));
    // Sleeping guarantees the first 100 ms TTL has passed; the renewed one has not.
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    EXPECT_FALSE(this->lock_->try_acquire("k", std::chrono::hours(1))) << "renew did not extend the lease";
    EXPECT_TRUE(this->lock_->release("k", t->token));
  }
}

TYPED_TEST_P(LockConformance, FenceGrowsWithEveryAcquireAndBumpFence) {
  std::uint64_t last = 0;
  for (int i = 0; i < 5; ++i) {
    auto t = this->lock_->try_acquire("k", std::chrono::hours(1));
    ASSERT_TRUE(t);
    EXPECT_GT(t->fence, last);
    last = t->fence;
    const std::uint64_t bumped = this->lock_->bump_fence("k");
    EXPECT_GT(bumped, last);
    last = bumped;
    ASSERT_TRUE(this->lock_->release("k", t->token));
  }
  // An expired lease taken over also gets a higher fence (checked in ExpiredLock...), and a fence
  // never goes back after the lock is released: the next acquire is still above the last bump.
  auto t = this->lock_->try_acquire("k", std::chrono::hours(1));
  ASSERT_TRUE(t);
  EXPECT_GT(t->fence, last);
  EXPECT_TRUE(this->lock_->release("k", t->token));
}

TYPED_TEST_P(LockConformance, TokensAreUniqueAcrossManyAcquisitions) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 250;
  std::vector<std::vector<std::string>> tokens(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const std::string key = "k" + std::to_string(t);
      for (int i = 0; i < kPerThread; ++i) {
        auto token = this->lock_->try_acquire(key, std::chrono::hours(1));
        if (!token) {
          ADD_FAILURE() << "could not take a free lock";
          return;
        }
        tokens[t].push_back(token->token);
        EXPECT_TRUE(this->lock_->release(key, token->token));
      }
    });
  }
  for (auto& th : threads) th.join();
  std::set<std::string> unique;
  for (const auto& list : tokens) {
    for (const auto& token : list) {
      EXPECT_TRUE(stampede_test::is_token_format(token)) << token;
      unique.insert(token);
    }
  }
  EXPECT_EQ(unique.size(), static_cast<std::size_t>(kThreads * kPerThread));
}

TYPED_TEST_P(LockConformance, AcquireTimesOutAndReturnsEmptyWhileTheLockIsHeld) {
  auto holder = this->lock_->try_acquire("k", std::chrono::hours(1));
  ASSERT_TRUE(holder);
  using ms = std::chrono::milliseconds;
  EXPECT_FALSE(stampede::acquire(*this->lock_, "k", ms(1000),
                                 {.timeout = ms(50), .retry = ms(5), .max_retry = ms(10), .jitter = 0.5}));
  EXPECT_FALSE(stampede::acquire(*this->lock_, "k", ms(1000), {.timeout = ms(0)}));  // one try
  EXPECT_TRUE(this->lock_->release("k", holder->token));
  auto free = stampede::acquire(*this->lock_, "k", ms(1000), {.timeout = ms(0)});
  ASSERT_TRUE(free);
  EXPECT_TRUE(this->lock_->release("k", free->token));
}

TYPED_TEST_P(LockConformance, AcquireWakesOnReleaseInsteadOfWaitingOutItsBackoff) {
  auto counting = std::make_shared<stampede_test::CountingLock>(this->lock_);
  auto holder = this->lock_->try_acquire("k", std::chrono::hours(1));
  ASSERT_TRUE(holder);
  // Backoff and timeout far beyond the hang guard: only the release signal can end the wait in time.
  const stampede::AcquireOptions patient{.timeout = std::chrono::hours(2),
                                         .retry = std::chrono::hours(1),
                                         .max_retry = std::chrono::hours(1),
                                         .jitter = 0.0};
  auto waiter = std::async(std::launch::async,
                           [&] { return stampede::acquire(*counting, "k", std::chrono::hours(1), patient); });
  ASSERT_TRUE(stampede_test::eventually([&] { return counting->failed_acquires() >= 1; }));
  EXPECT_TRUE(this->lock_->release("k", holder->token));
  const bool woke = waiter.wait_for(stampede_test::kHangGuard) == std::future_status::ready;
  EXPECT_TRUE(woke) << "acquire() did not wake on release";
  if (!woke) {
    this->lock_->notify("k");  // let the waiter finish so the test can end
  }
  std::optional<stampede::LockToken> got = waiter.get();
  ASSERT_TRUE(got);
  EXPECT_GT(got->fence, holder->fence);
  EXPECT_TRUE(this->lock_->release("k", got->token));
}

TYPED_TEST_P(LockConformance, SubscriptionSeesASignalSentAfterSubscribing) {
  // notify() between subscribe() and wait: not lost.
  auto sub = this->lock_->subscribe("k");
  this->lock_->notify("k");
  EXPECT_TRUE(sub->wait_until(std::chrono::steady_clock::now() + stampede_test::kHangGuard));

  // A release by another thread wakes a waiter.
  auto holder = this->lock_->try_acquire("k", std::chrono::hours(1));
  ASSERT_TRUE(holder);
  auto sub2 = this->lock_->subscribe("k");
  std::thread releaser([&] { EXPECT_TRUE(this->lock_->release("k", holder->token)); });
  EXPECT_TRUE(sub2->wait_until(std::chrono::steady_clock::now() + stampede_test::kHangGuard));
  releaser.join();
}

TYPED_TEST_P(LockConformance, LockLeaseReleasesInItsDestructor) {
  {
    std::optional<stampede::LockLease> lease = stampede::LockLease::acquire(
        this->lock_, "k", std::chrono::hours(1), {.timeout = std::chrono::milliseconds(0)});
    ASSERT_TRUE(lease);
    EXPECT_TRUE(lease->owns_lock());
    EXPECT_EQ(lease->key(), "k");
    EXPECT_FALSE(this->lock_->try_acquire("k", std::chrono::hours(1)));

    // Moving hands over ownership; the moved-from lease releases nothing.
    stampede::LockLease moved = std::move(*lease);
    EXPECT_FALSE(lease->owns_lock());
    EXPECT_TRUE(moved.owns_lock());
    lease.reset();
    EXPECT_FALSE(this->lock_->try_acquire("k", std::chrono::hours(1)));
  }
  auto next = this->lock_->try_acquire("k", std::chrono::hours(1));
  ASSERT_TRUE(next) << "~LockLease did not release";
  EXPECT_TRUE(this->lock_->release("k", next->token));
}

TYPED_TEST_P(LockConformance, LockLeaseReleaseReportsWhetherTheLockWasStillOurs) {
  auto token = this->lock_->try_acquire("k", std::chrono::hours(1));
  ASSERT_TRUE(token);
  stampede::LockLease lease(this->lock_, "k", *token, std::chrono::hours(1));
  EXPECT_TRUE(lease.renew());
  EXPECT_TRUE(lease.release());
  EXPECT_FALSE(lease.owns_lock());
  EXPECT_FALSE(lease.release());

  // A lease whose lock was taken over: release() says so and leaves the new owner's lock alone.
  const stampede::LockToken old = this->take_and_expire("j");
  stampede::LockLease stale(this->lock_, "j", old, std::chrono::milliseconds(50));
  auto next = this->take_after_expiry("j", std::chrono::hours(1));
  ASSERT_TRUE(next);
  EXPECT_FALSE(stale.renew());
  EXPECT_FALSE(stale.release());
  EXPECT_FALSE(this->lock_->try_acquire("j", std::chrono::hours(1)));
  EXPECT_TRUE(this->lock_->release("j", next->token));
}

TYPED_TEST_P(LockConformance, WatchdogKeepsTheLeasePastItsTtl) {
  std::atomic<int> lost_calls{0};
  if constexpr (TypeParam::kClockDrivesLockExpiry) {
    // The lock expires on the test clock, which moves half a TTL at a time and only after the
    // watchdog renewed the lease: the outcome does not depend on how fast the renewer runs.
    auto lock = std::make_shared<lock_conformance::FailingRenewals>(this->lock_, 0);
    constexpr auto kTtl = std::chrono::hours(1);
    auto token = lock->try_acquire("k", kTtl);
    ASSERT_TRUE(token);
    stampede::LockLease lease(lock, "k", *token, kTtl,
                              {.enabled = true, .interval = std::chrono::milliseconds(5), .on_lost = [&] {
                                 lost_calls.fetch_add(1);
                               }});
    for (int step = 1; step <= 4; ++step) {
      // Two more accepted renewals: the second one started after the first was counted, so after
      // the clock's last step, and read the clock that this step moves on from.
      const int seen = lock->renewed();
      ASSERT_TRUE(stampede_test::eventually([&] { return lock->renewed() >= seen + 2 || lease.lost(); }));
      this->clock_->advance(kTtl / 2);
      EXPECT_FALSE(this->lock_->try_acquire("k", kTtl))
          << "the lease expired under its watchdog at step " << step;
    }
    // Two TTLs of lock time since the acquire: only the renewals kept the lease.
    EXPECT_FALSE(lease.lost());
    EXPECT_TRUE(lease.release()) << "the lease was no longer ours";
  } else {
    // The backend expires locks in real time, so this test takes real time: a 3 s lease renewed
    // every 100 ms, watched for at least 4 s. A renewal has 2.9 s to get through, a margin that
    // a machine with a load average of 35 meets (the test asserts no duration).
    auto lock = TypeParam::lock(stampede::system_clock());
    constexpr auto kTtl = std::chrono::seconds(3);
    auto token = lock->try_acquire("k", kTtl);
    ASSERT_TRUE(token);
    stampede::LockLease lease(lock, "k", *token, kTtl,
                              {.enabled = true, .interval = std::chrono::milliseconds(100), .on_lost = [&] {
                                 lost_calls.fetch_add(1);
                               }});
    // Another contender fails for 40 x 100 ms, more than a TTL (sleep_for never returns early).
    std::thread contender([&] {
      for (int i = 0; i < 40; ++i) {
        if (auto stolen = lock->try_acquire("k", kTtl)) {
          ADD_FAILURE() << "the lease expired under its watchdog after " << i << " attempts";
          lock->release("k", stolen->token);
          return;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    });
    contender.join();
    EXPECT_FALSE(lease.lost());
    EXPECT_TRUE(lease.release()) << "the lease was no longer ours";
  }
  EXPECT_EQ(lost_calls.load(), 0);
}

TYPED_TEST_P(LockConformance, WatchdogReportsLossWhenTheLockIsTaken) {
  auto lock = TypeParam::lock(stampede::system_clock());
  auto token = lock->try_acquire("k", std::chrono::hours(1));
  ASSERT_TRUE(token);
  std::atomic<int> lost_calls{0};
  std::promise<void> lost;
  stampede::LockLease lease(lock, "k", *token, std::chrono::hours(1),
                            {.enabled = true, .interval = std::chrono::milliseconds(10), .on_lost = [&] {
                               if (lost_calls.fetch_add(1) == 0) lost.set_value();
                             }});
  // Simulate the lease expiring and someone else taking the key.
  ASSERT_TRUE(lock->release("k", token->token));
  auto thief = lock->try_acquire("k", std::chrono::hours(1));
  ASSERT_TRUE(thief);
  ASSERT_EQ(lost.get_future().wait_for(stampede_test::kHangGuard), std::future_status::ready)
      << "on_lost was never called";
  EXPECT_TRUE(lease.lost());
  EXPECT_FALSE(lease.release());
  EXPECT_EQ(lost_calls.load(), 1);
  EXPECT_FALSE(lock->try_acquire("k", std::chrono::hours(1))) << "the lost lease released the thief's lock";
  EXPECT_TRUE(lock->release("k", thief->token));
}

TYPED_TEST_P(LockConformance, WatchdogReportsLossWhenTheLeaseExpiredBeforeRenewal) {
  // A 50 ms lease with a 300 ms renewal period: the first renewal comes after the expiry.
  auto lock = TypeParam::lock(stampede::system_clock());
  auto token = lock->try_acquire("k", std::chrono::milliseconds(50));
  ASSERT_TRUE(token);
  std::promise<void> lost;
  stampede::LockLease lease(
      lock, "k", *token, std::chrono::milliseconds(50),
      {.enabled = true, .interval = std::chrono::milliseconds(300), .on_lost = [&] { lost.set_value(); }});
  ASSERT_EQ(lost.get_future().wait_for(stampede_test::kHangGuard), std::future_status::ready)
      << "on_lost was never called";
  EXPECT_TRUE(lease.lost());
}

TYPED_TEST_P(LockConformance, WatchdogKeepsTheLeaseThroughRenewalsThatThrow) {
  // A one-hour lease: its known expiry is never near, so the outcome does not depend on how soon
  // the renewer retries. What is tested is that a renewal that threw is retried, not given up.
  auto inner = TypeParam::lock(stampede::system_clock());
  auto lock = std::make_shared<lock_conformance::FailingRenewals>(inner, 2);
  constexpr auto kTtl = std::chrono::hours(1);
  auto token = lock->try_acquire("k", kTtl);
  ASSERT_TRUE(token);
  std::atomic<int> lost_calls{0};
  stampede::LockLease lease(lock, "k", *token, kTtl,
                            {.enabled = true, .interval = std::chrono::milliseconds(10), .on_lost = [&] {
                               lost_calls.fetch_add(1);
                             }});
  // Two renewals throw; the watchdog retries. Accepted renewals prove the lock was still ours.
  ASSERT_TRUE(stampede_test::eventually([&] { return lock->renewed() >= 4 || lease.lost(); }));
  EXPECT_FALSE(lease.lost()) << "a renewal that threw gave the lease up";
  EXPECT_EQ(lost_calls.load(), 0);
  EXPECT_FALSE(inner->try_acquire("k", kTtl)) << "the lease is no longer held";
  EXPECT_TRUE(lease.release());
}

TYPED_TEST_P(LockConformance, WatchdogReportsLossWhenRenewalsThrowUntilTheKnownExpiry) {
  // Every renewal throws: the watchdog retries until the lease's known expiry (50 ms after it was
  // built, on the steady clock), then reports the lease lost, however late the retries run.
  auto inner = TypeParam::lock(stampede::system_clock());
  auto lock = std::make_shared<lock_conformance::FailingRenewals>(inner, 1 << 30);
  constexpr auto kTtl = std::chrono::milliseconds(50);
  auto token = lock->try_acquire("k", kTtl);
  ASSERT_TRUE(token);
  std::atomic<int> lost_calls{0};
  std::promise<void> lost;
  stampede::LockLease lease(lock, "k", *token, kTtl,
                            {.enabled = true, .interval = std::chrono::milliseconds(10), .on_lost = [&] {
                               if (lost_calls.fetch_add(1) == 0) lost.set_value();
                             }});
  ASSERT_EQ(lost.get_future().wait_for(stampede_test::kHangGuard), std::future_status::ready)
      << "on_lost was never called";
  EXPECT_TRUE(lease.lost());
  EXPECT_EQ(lock->renewed(), 0);
  EXPECT_EQ(lost_calls.load(), 1);
}

TYPED_TEST_P(LockConformance, BadArgumentsThrowInvalidArgument) {
  using ms = std::chrono::milliseconds;
  EXPECT_THROW((void)this->lock_->try_acquire("", ms(1000)), std::invalid_argument);
  EXPECT_THROW((void)this->lock_->try_acquire("k", ms(0)), std::invalid_argument);
  EXPECT_THROW((void)this->lock_->try_acquire("k", ms(-5)), std::invalid_argument);
  EXPECT_THROW((void)stampede::acquire(*this->lock_, "k", ms(1000), {.retry = ms(0)}), std::invalid_argument);
  EXPECT_THROW((void)stampede::acquire(*this->lock_, "k", ms(1000), {.retry = ms(100), .max_retry = ms(10)}),
               std::invalid_argument);
  EXPECT_THROW((void)stampede::acquire(*this->lock_, "k", ms(1000), {.jitter = 1.5}), std::invalid_argument);
  EXPECT_THROW((void)stampede::acquire(*this->lock_, "k", ms(1000), {.timeout = ms(-1)}),
               std::invalid_argument);
  EXPECT_THROW(stampede::LockLease(nullptr, "k", stampede::LockToken{}, ms(1000)), std::invalid_argument);
  // None of that took the lock.
  auto t = this->lock_->try_acquire("k", ms(1000));
  ASSERT_TRUE(t);
  EXPECT_TRUE(this->lock_->release("k", t->token));
}

// The checks live once, in TokenLock's public methods, so every backend has them all.
TYPED_TEST_P(LockConformance, EveryMethodRejectsAnEmptyKeyAndANonPositiveTtl) {
  using ms = std::chrono::milliseconds;
  stampede::TokenLock& lock = *this->lock_;
  EXPECT_THROW((void)lock.try_acquire("", ms(1000)), std::invalid_argument);
  EXPECT_THROW((void)lock.release("", "token"), std::invalid_argument);
  EXPECT_THROW((void)lock.renew("", "token", ms(1000)), std::invalid_argument);
  EXPECT_THROW((void)lock.bump_fence(""), std::invalid_argument);
  EXPECT_THROW((void)lock.subscribe(""), std::invalid_argument);
  EXPECT_THROW(lock.notify(""), std::invalid_argument);
  EXPECT_THROW((void)lock.try_acquire("k", ms(0)), std::invalid_argument);
  EXPECT_THROW((void)lock.renew("k", "token", ms(0)), std::invalid_argument);
  EXPECT_THROW((void)lock.renew("k", "token", ms(-1)), std::invalid_argument);
}

REGISTER_TYPED_TEST_SUITE_P(
    LockConformance, HeldLockCannotBeTakenAndIsFreeAfterRelease, LocksOnDifferentKeysAreIndependent,
    WrongTokenCannotReleaseOrRenew, PreviousOwnerCannotReleaseOrRenewTheNextOwnersLock,
    ExpiredLockCanBeTakenByAnotherAndTheOldTokenIsVoid, RenewKeepsTheLockPastItsFirstTtl,
    FenceGrowsWithEveryAcquireAndBumpFence, TokensAreUniqueAcrossManyAcquisitions,
    AcquireTimesOutAndReturnsEmptyWhileTheLockIsHeld, AcquireWakesOnReleaseInsteadOfWaitingOutItsBackoff,
    SubscriptionSeesASignalSentAfterSubscribing, LockLeaseReleasesInItsDestructor,
    LockLeaseReleaseReportsWhetherTheLockWasStillOurs, WatchdogKeepsTheLeasePastItsTtl,
    WatchdogReportsLossWhenTheLockIsTaken, WatchdogReportsLossWhenTheLeaseExpiredBeforeRenewal,
    WatchdogKeepsTheLeaseThroughRenewalsThatThrow, WatchdogReportsLossWhenRenewalsThrowUntilTheKnownExpiry,
    BadArgumentsThrowInvalidArgument, EveryMethodRejectsAnEmptyKeyAndANonPositiveTtl);
