// stampede/lease.hpp: LockLease, the RAII owner of an acquired token lock, with a watchdog.
//
// A lease releases its lock when it goes out of scope; with the watchdog on it renews the lock
// every ttl/3 while it is held, and reports when it is lost.
//
//   auto lock = std::make_shared<stampede::MemoryTokenLock>();
//   if (auto lease = stampede::LockLease::acquire(lock, "job:7", 5s, {.timeout = 2s}, {.enabled = true})) {
//     do_work(lease->token().fence);          // released when `lease` goes out of scope
//   }
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "stampede/export.hpp"
#include "stampede/token_lock.hpp"

namespace stampede {

namespace detail {
struct LeaseState;
}  // namespace detail

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
class STAMPEDE_EXPORT LockLease {
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
  std::shared_ptr<detail::LeaseState> state_;
};

}  // namespace stampede
