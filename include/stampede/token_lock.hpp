// stampede/token_lock.hpp: the token lock primitive under every Cache.
//
// A lock on a key is held by whoever holds its random token; only that holder can release or renew
// it, and it expires by itself after its TTL so a crashed holder cannot block the key forever.
// Every successful acquire also returns a fence: a per-key number that grows with each acquire, so
// a store can refuse writes from a holder whose lock has since expired.
//
// LockLease (stampede/lease.hpp) is its RAII owner.
//
//   auto lock = std::make_shared<stampede::MemoryTokenLock>();
//   if (auto t = stampede::acquire(*lock, "job:7", 5s, {.timeout = 2s})) {
//     do_work(t->fence); lock->release("job:7", t->token); }
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace stampede {

/// What a successful acquire hands out.
struct LockToken {
  /// 128 random bits as 32 lowercase hex characters; unique per acquisition, also across fork().
  std::string token;
  /// Per-key fencing number, strictly greater than that of every earlier acquire of the key.
  std::uint64_t fence = 0;
  friend bool operator==(const LockToken&, const LockToken&) = default;
};

/// A registration for "this key's lock was released or its value was stored". Obtain it *before*
/// re-checking the store, then wait: a signal sent after subscribe() is never lost.
class Subscription {
 public:
  virtual ~Subscription() = default;
  /// Blocks until a signal for the key arrives after subscribe(), or `deadline` passes.
  /// @return true if signalled, false on timeout. Spurious `true` is allowed; re-check the state.
  virtual bool wait_until(std::chrono::steady_clock::time_point deadline) = 0;
};

/// A backend's token lock. Implementations are thread-safe. Methods that talk to a server throw
/// stampede::backend_error when it fails; losing a race is never an exception.
class TokenLock {
 public:
  virtual ~TokenLock() = default;

  /// Takes the lock on `key` for `ttl` if nobody holds it (or the holder's lease expired).
  /// @param key non-empty
  /// @param ttl > 0
  /// @return the token and fence, or std::nullopt if another holder has it.
  /// @throws std::invalid_argument for an empty key or ttl <= 0; backend_error.
  [[nodiscard]] virtual std::optional<LockToken> try_acquire(std::string_view key,
                                                             std::chrono::milliseconds ttl) = 0;

  /// Releases the lock if `token` still holds it, and signals waiters.
  /// @return true if released; false if the token is not the current, unexpired owner.
  virtual bool release(std::string_view key, std::string_view token) = 0;

  /// Resets the lock's TTL to `ttl` if `token` still holds it.
  /// @return true if renewed; false if the token is not the current, unexpired owner.
  [[nodiscard]] virtual bool renew(std::string_view key, std::string_view token,
                                   std::chrono::milliseconds ttl) = 0;

  /// Raises the key's fence without taking the lock (used by invalidate and put).
  /// @return the new fence, greater than every fence handed out before.
  virtual std::uint64_t bump_fence(std::string_view key) = 0;

  /// Registers for the key's next release/stored signal. See Subscription.
  [[nodiscard]] virtual std::unique_ptr<Subscription> subscribe(std::string_view key) = 0;

  /// Signals the key's waiters ("the value is stored"), e.g. after a store by a lock holder.
  virtual void notify(std::string_view key) = 0;
};

/// Retry policy of a blocking acquire.
struct AcquireOptions {
  /// Give up after this long. 0 = try once.
  std::chrono::milliseconds timeout{std::chrono::seconds{10}};
  /// First backoff; doubles after each failed attempt up to max_retry. Must be > 0.
  std::chrono::milliseconds retry{100};
  /// Backoff cap. Must be >= retry.
  std::chrono::milliseconds max_retry{std::chrono::seconds{1}};
  /// Each backoff is scaled by a random factor in [1 - jitter, 1 + jitter]. In [0, 1].
  double jitter = 0.5;
};

/// Blocking acquire: tries, then waits for a release signal or the jittered backoff, whichever
/// comes first, and tries again until `options.timeout`.
/// @return the token, or std::nullopt on timeout.
/// @throws std::invalid_argument for bad options; backend_error.
[[nodiscard]] std::optional<LockToken> acquire(TokenLock& lock, std::string_view key,
                                               std::chrono::milliseconds ttl,
                                               const AcquireOptions& options = {});

}  // namespace stampede
