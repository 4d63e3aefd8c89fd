#include "stampede/lease.hpp"

#include <algorithm>
#include <stdexcept>
#include <utility>

#include "stampede/detail/fork.hpp"
#include "stampede/detail/lease_renewer.hpp"

namespace stampede {

LockLease::LockLease(std::shared_ptr<TokenLock> lock, std::string key, LockToken token,
                     std::chrono::milliseconds ttl, WatchdogOptions watchdog)
    : state_(std::make_shared<detail::LeaseState>()) {
  if (!lock) throw std::invalid_argument("stampede::LockLease: lock must not be null");
  state_->lock = std::move(lock);
  state_->key = std::move(key);
  state_->token = std::move(token);
  state_->ttl = ttl;
  state_->generation = detail::fork_generation();
  if (watchdog.enabled) {
    state_->watched = true;
    state_->interval =
        watchdog.interval.count() > 0 ? watchdog.interval : std::max(ttl / 3, std::chrono::milliseconds(1));
    state_->on_lost = std::move(watchdog.on_lost);
    const auto now = std::chrono::steady_clock::now();
    {
      detail::MutexLock l(state_->mu);
      state_->expiry = now + ttl;
    }
    try {
      detail::LeaseRenewer::schedule(detail::LeaseRenewer::core(), state_, now + state_->interval);
    } catch (...) {
      // No renewer thread could be started: the lease is not built, so give the lock back.
      try {
        state_->lock->release(state_->key, state_->token.token);
      } catch (...) {
      }
      throw;
    }
  }
}

LockLease::LockLease(LockLease&&) noexcept = default;

LockLease& LockLease::operator=(LockLease&& other) noexcept {
  if (this != &other) {
    try {
      release();
    } catch (...) {
    }
    state_ = std::move(other.state_);
  }
  return *this;
}

LockLease::~LockLease() {
  try {
    release();
  } catch (...) {
    // Never throw from a destructor; the lock expires by itself after its TTL.
  }
}

std::optional<LockLease> LockLease::acquire(std::shared_ptr<TokenLock> lock, std::string key,
                                            std::chrono::milliseconds ttl, const AcquireOptions& options,
                                            WatchdogOptions watchdog) {
  if (!lock) throw std::invalid_argument("stampede::LockLease: lock must not be null");
  auto token = stampede::acquire(*lock, key, ttl, options);
  if (!token) return std::nullopt;
  return LockLease(std::move(lock), std::move(key), std::move(*token), ttl, std::move(watchdog));
}

bool LockLease::owns_lock() const noexcept { return state_ && state_->owned; }
bool LockLease::lost() const noexcept { return state_ && state_->lost.load(std::memory_order_acquire); }
const LockToken& LockLease::token() const noexcept { return state_->token; }
const std::string& LockLease::key() const noexcept { return state_->key; }

bool LockLease::renew() {
  if (!owns_lock() || state_->generation != detail::fork_generation()) return false;
  const auto start = std::chrono::steady_clock::now();
  const bool renewed = state_->lock->renew(state_->key, state_->token.token, state_->ttl);
  if (renewed && state_->watched) {
    detail::MutexLock l(state_->mu);
    state_->expiry = std::max(state_->expiry, start + state_->ttl);
  }
  return renewed;
}

bool LockLease::release() {
  if (!owns_lock()) return false;
  state_->owned = false;
  // A lease inherited across fork() belongs to the parent, which still holds and renews it.
  if (state_->generation != detail::fork_generation()) return false;
  if (state_->watched) {
    detail::MutexLock l(state_->mu);  // waits for a renewal in progress
    state_->stopping = true;
    detail::LeaseRenewer::cancel(*state_);
  }
  return state_->lock->release(state_->key, state_->token.token);
}

}  // namespace stampede
