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

#include "stampede/export.hpp"

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
class STAMPEDE_EXPORT Subscription {
 public:
  virtual ~Subscription() = default;
  /// Blocks until a signal for the key arrives after subscribe(), or `deadline` passes.
  /// @return true if signalled, false on timeout. Spurious `true` is allowed; re-check the state.
  virtual bool wait_until(std::chrono::steady_clock::time_point deadline) = 0;
};

/// A backend's token lock. Implementations are thread-safe. Methods that talk to a server throw
/// stampede::backend_error when it fails; losing a race is never an exception.
///
/// The public methods check their arguments (a non-empty key, a ttl > 0) and then call the
/// backend's private virtual of the same name with a `do_` prefix (the non-virtual interface
/// idiom): a backend implements the do_ methods and never sees a bad argument.
class STAMPEDE_EXPORT TokenLock {
 public:
  virtual ~TokenLock() = default;

  /// Takes the lock on `key` for `ttl` if nobody holds it (or the holder's lease expired).
  /// @param key non-empty
  /// @param ttl > 0
  /// @return the token and fence, or std::nullopt if another holder has it.
  /// @throws std::invalid_argument for an empty key or ttl <= 0; backend_error.
  [[nodiscard]] std::optional<LockToken> try_acquire(std::string_view key, std::chrono::milliseconds ttl) {
    check_key(key);
    check_ttl(ttl);
    return do_try_acquire(key, ttl);
  }

  /// Releases the lock if `token` still holds it, and signals waiters.
  /// @param key non-empty
  /// @param token the holder's token
  /// @return true if released; false if the token is not the current, unexpired owner.
  /// @throws std::invalid_argument for an empty key; backend_error.
  bool release(std::string_view key, std::string_view token) {
    check_key(key);
    return do_release(key, token);
  }

  /// Resets the lock's TTL to `ttl` if `token` still holds it.
  /// @param key non-empty
  /// @param token the holder's token
  /// @param ttl > 0
  /// @return true if renewed; false if the token is not the current, unexpired owner.
  /// @throws std::invalid_argument for an empty key or ttl <= 0; backend_error.
  [[nodiscard]] bool renew(std::string_view key, std::string_view token, std::chrono::milliseconds ttl) {
    check_key(key);
    check_ttl(ttl);
    return do_renew(key, token, ttl);
  }

  /// Raises the key's fence without taking the lock (used by invalidate and put).
  /// @param key non-empty
  /// @return the new fence, greater than every fence handed out before.
  /// @throws std::invalid_argument for an empty key; backend_error.
  std::uint64_t bump_fence(std::string_view key) {
    check_key(key);
    return do_bump_fence(key);
  }

  /// Registers for the key's next release/stored signal. See Subscription.
  /// @param key non-empty
  /// @return the registration; it must not outlive the lock unless the backend says it may.
  /// @throws std::invalid_argument for an empty key; backend_error.
  [[nodiscard]] std::unique_ptr<Subscription> subscribe(std::string_view key) {
    check_key(key);
    return do_subscribe(key);
  }

  /// Signals the key's waiters ("the value is stored"), e.g. after a store by a lock holder.
  /// @param key non-empty
  /// @throws std::invalid_argument for an empty key; backend_error.
  void notify(std::string_view key) {
    check_key(key);
    do_notify(key);
  }

 private:
  // The backend's operations, as the public methods above describe them. They are called with a
  // non-empty key and, where there is one, a ttl > 0.
  virtual std::optional<LockToken> do_try_acquire(std::string_view key, std::chrono::milliseconds ttl) = 0;
  virtual bool do_release(std::string_view key, std::string_view token) = 0;
  virtual bool do_renew(std::string_view key, std::string_view token, std::chrono::milliseconds ttl) = 0;
  virtual std::uint64_t do_bump_fence(std::string_view key) = 0;
  virtual std::unique_ptr<Subscription> do_subscribe(std::string_view key) = 0;
  virtual void do_notify(std::string_view key) = 0;

 protected:
  /// The checks of the public methods, for a backend's methods of its own.
  /// @throws std::invalid_argument if `key` is empty.
  static void check_key(std::string_view key);
  /// @throws std::invalid_argument if `ttl` <= 0.
  static void check_ttl(std::chrono::milliseconds ttl);
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
[[nodiscard]] STAMPEDE_EXPORT std::optional<LockToken> acquire(TokenLock& lock, std::string_view key,
                                                               std::chrono::milliseconds ttl,
                                                               const AcquireOptions& options = {});

}  // namespace stampede
