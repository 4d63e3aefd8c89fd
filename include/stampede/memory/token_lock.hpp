// stampede/memory/token_lock.hpp: MemoryTokenLock, the token lock of the embedded in-process backend.
//
// Locks live in this process and expire by an injected Clock (monotonic by default), so a test
// expires a lease by moving a ManualClock instead of sleeping.
//
//   auto lock = std::make_shared<stampede::MemoryTokenLock>();
//   if (auto t = lock->try_acquire("job:1", 5s)) { work(); lock->release("job:1", t->token); }
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "stampede/clock.hpp"
#include "stampede/export.hpp"
#include "stampede/token_lock.hpp"

namespace stampede {

/// In-process token lock. Thread-safe.
///
/// Locks expire by the injected Clock (default: monotonic_clock()), so tests can expire a lease by
/// moving a ManualClock. Waiters are woken by a condition variable on release/notify (striped: a
/// signal may wake waiters of other keys, which then re-check).
///
/// Fences come from one counter per lock object, shared by all keys: every fence handed out is
/// greater than every earlier one, of any key. So fences never go backwards for a key, and the
/// lock keeps no memory per key for them. MemoryStore relies on this (see its Fencing notes).
///
/// Memory: a holder entry lives until its release, or, for a lease that expired without one, until
/// an incremental sweep drops it: every try_acquire looks at a few hash buckets of its own stripe,
/// and every 8th also at a rotating other stripe. What is held stays bounded by the live locks,
/// not by the keys ever locked.
///
/// fork(): a child gets a lock with no holders (the parent's other threads, which held them, do not
/// exist there) and fences that continue from the parent's counter. The parent's lock state is
/// abandoned in the child, never destroyed. A Subscription taken before the fork returns at once
/// (a spurious wake-up: re-check).
///
/// Lifetime: Subscriptions must not outlive the lock.
class STAMPEDE_EXPORT MemoryTokenLock final : public TokenLock {
 public:
  /// @param clock the time of lock expiry; null = monotonic_clock().
  explicit MemoryTokenLock(std::shared_ptr<const Clock> clock = monotonic_clock());
  ~MemoryTokenLock() override;
  MemoryTokenLock(const MemoryTokenLock&) = delete;
  MemoryTokenLock& operator=(const MemoryTokenLock&) = delete;

  /// @return the current holder's token of `key`, if the lock is held and unexpired (for tests/tools).
  [[nodiscard]] std::optional<std::string> holder(std::string_view key) const;
  /// @return holder entries kept, held or expired and not yet swept (for tests of memory bounds).
  [[nodiscard]] std::size_t tracked_keys() const;

 private:
  std::optional<LockToken> do_try_acquire(std::string_view key, std::chrono::milliseconds ttl) override;
  bool do_release(std::string_view key, std::string_view token) override;
  bool do_renew(std::string_view key, std::string_view token, std::chrono::milliseconds ttl) override;
  std::uint64_t do_bump_fence(std::string_view key) override;
  std::unique_ptr<Subscription> do_subscribe(std::string_view key) override;
  void do_notify(std::string_view key) override;

  struct Stripe;
  struct State;
  class StripeSubscription;
  State& current() const;
  static Stripe& stripe_for(State& state, std::string_view key) noexcept;
  void sweep_some(State& state, Clock::time_point now) const;

  std::shared_ptr<const Clock> clock_;
  std::atomic<std::uint64_t> last_fence_{0};
  // The mutable state of this process generation; replaced (and the old one abandoned) in a
  // fork()ed child.
  mutable std::atomic<State*> state_;
};

}  // namespace stampede
