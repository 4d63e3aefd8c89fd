// stampede/token_lock.hpp: the token lock primitive under every Cache.
//
// A lock on a key is held by whoever holds its random token; only that holder can release or renew
// it, and it expires by itself after its TTL so a crashed holder cannot block the key forever.
// Every successful acquire also returns a fence: a per-key number that grows with each acquire, so
// a store can refuse writes from a holder whose lock has since expired.
//
//   auto lock = std::make_shared<stampede::MemoryTokenLock>();
//   if (auto lease = stampede::LockLease::acquire(lock, "job:7", 5s, {.timeout = 2s})) {
//     do_work(lease->token().fence);          // released when `lease` goes out of scope
//   }
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

namespace stampede {

namespace detail {
class LeaseRenewer;
/// @return the watched leases this process's renewer tracks now (scheduled, or due and waiting
///         for a renewal worker). Released leases are not counted. For tests and diagnostics.
///         Thread-safe.
std::size_t lease_renewer_pending();
}  // namespace detail

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

/// Watchdog settings of a LockLease.
struct WatchdogOptions {
  /// Renew the lease in the background while it is held.
  bool enabled = false;
  /// Renewal period; 0 = ttl / 3.
  std::chrono::milliseconds interval{0};
  /// Called once, on a renewal worker thread, when the lease is lost: a renewal was refused (the
  /// lock is no longer ours), or renewals kept throwing until the lease's known expiry. Must be
  /// short and must not call into the same lease; an exception from it is swallowed.
  std::function<void()> on_lost;
};

/// RAII ownership of one acquired token lock, with an optional watchdog that renews it every
/// `interval` while it is held. Releases (best effort) in a noexcept destructor.
///
/// The watchdog: one scheduler thread per process keeps every watched lease by its due time and
/// hands due renewals to a pool of renewal workers (started on demand, at most 8 at once; idle
/// ones leave after 10 s), so a renewal that blocks on a slow server delays only its own lease
/// (with 8 renewals blocked at once, the next due ones wait for a free worker). A renewal that
/// throws (e.g. backend_error: the server failed, so it is unknown whether the lock is still
/// ours) is retried after a short backoff (10 ms, doubling up to 250 ms) until the lease's known
/// expiry: the steady_clock time of the lease's construction or last successful renewal, plus
/// `ttl`. The lease is lost when a renewal returns false (a definite refusal), or when renewals
/// still fail at the known expiry; then lost() turns true and on_lost runs once.
///
/// Thread-compatible: one owner uses it; `lost()` may be read from any thread. Movable.
/// Lifetime: release() and the destructor wait for a renewal of this lease in progress; no
/// renewal or on_lost call happens after they return, and the renewer forgets the lease at once.
/// on_lost runs on a renewal worker while it holds the lease's state: it must be short and must
/// not call into the same lease. The renewer's threads and state are never destroyed (a lease may
/// outlive static destruction).
/// fork(): a lease belongs to the process that made it. In a fork()ed child, a lease inherited
/// from the parent is neither renewed nor released (renew() and release() return false without
/// touching the lock, which the parent still holds); leases the child makes are renewed by the
/// child's own renewer, started on its first watched lease.
class LockLease {
 public:
  LockLease() = default;
  /// Adopts `token`, already acquired on `key` with `ttl`.
  LockLease(std::shared_ptr<TokenLock> lock, std::string key, LockToken token, std::chrono::milliseconds ttl,
            WatchdogOptions watchdog = {});
  LockLease(LockLease&&) noexcept;
  LockLease& operator=(LockLease&&) noexcept;
  LockLease(const LockLease&) = delete;
  LockLease& operator=(const LockLease&) = delete;
  ~LockLease();

  /// Blocking acquire (see stampede::acquire) wrapped in a lease.
  /// @return the lease, or std::nullopt on timeout.
  [[nodiscard]] static std::optional<LockLease> acquire(std::shared_ptr<TokenLock> lock, std::string key,
                                                        std::chrono::milliseconds ttl,
                                                        const AcquireOptions& options = {},
                                                        WatchdogOptions watchdog = {});

  /// @return true until release() or a move-from.
  [[nodiscard]] bool owns_lock() const noexcept;
  /// @return true once the watchdog failed to renew (the lock may now be someone else's).
  [[nodiscard]] bool lost() const noexcept;
  /// @return the token and fence of this lease. Precondition: owns_lock().
  [[nodiscard]] const LockToken& token() const noexcept;
  [[nodiscard]] const std::string& key() const noexcept;
  /// Renews now (after a watchdog renewal of this lease in progress); on success the watchdog's
  /// known expiry moves too.
  /// @return false if the lease is no longer ours (or was inherited across fork()).
  /// @throws backend_error.
  [[nodiscard]] bool renew();
  /// Stops the watchdog and releases the lock.
  /// @return true if the lock was still ours when released; false without touching the lock for
  ///         a lease inherited across fork().
  /// @throws backend_error (the destructor swallows it instead).
  bool release();
  /// Alias of release(), for std::unique_lock-like code.
  void unlock() { release(); }

 private:
  friend class detail::LeaseRenewer;
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace stampede
