#include "stampede/token_lock.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <stdexcept>
#include <utility>

#include "stampede/detail/thread_annotations.hpp"
#include "stampede/errors.hpp"

namespace stampede {

namespace detail {
std::chrono::nanoseconds jittered(std::chrono::nanoseconds d, double spread) noexcept;
}  // namespace detail

std::optional<LockToken> acquire(TokenLock& lock, std::string_view key, std::chrono::milliseconds ttl,
                                 const AcquireOptions& options) {
  if (options.timeout.count() < 0) throw std::invalid_argument("stampede::AcquireOptions.timeout must be >= 0");
  if (options.retry.count() <= 0) throw std::invalid_argument("stampede::AcquireOptions.retry must be > 0");
  if (options.max_retry < options.retry) {
    throw std::invalid_argument("stampede::AcquireOptions.max_retry must be >= retry");
  }
  if (!(options.jitter >= 0.0 && options.jitter <= 1.0)) {
    throw std::invalid_argument("stampede::AcquireOptions.jitter must be in [0, 1]");
  }
  using steady = std::chrono::steady_clock;
  const auto deadline = steady::now() + options.timeout;
  std::chrono::nanoseconds backoff = options.retry;
  for (;;) {
    // Subscribe first: a release between the failed attempt and the wait still wakes us.
    std::unique_ptr<Subscription> sub = lock.subscribe(key);
    if (auto token = lock.try_acquire(key, ttl)) return token;
    const auto now = steady::now();
    if (now >= deadline) return std::nullopt;
    sub->wait_until(std::min(deadline, now + detail::jittered(backoff, options.jitter)));
    backoff = std::min<std::chrono::nanoseconds>(backoff * 2, options.max_retry);
  }
}

// ---- LockLease ---------------------------------------------------------------------------------

struct LockLease::State {
  std::shared_ptr<TokenLock> lock;
  std::string key;
  LockToken token;
  std::chrono::milliseconds ttl;
  std::atomic<bool> lost{false};
  bool owned = true;

  detail::Mutex mu;
  std::condition_variable_any cv;
  bool stopping STAMPEDE_GUARDED_BY(mu) = false;
  std::thread watchdog;

  void run_watchdog(std::chrono::milliseconds interval, std::function<void()> on_lost) {
    detail::MutexLock l(mu);
    for (;;) {
      if (cv.wait_for(l, interval, [this]() STAMPEDE_REQUIRES(mu) { return stopping; })) return;
      bool renewed = false;
      l.unlock();
      try {
        renewed = lock->renew(key, token.token, ttl);
      } catch (const std::exception&) {
        renewed = false;  // cannot tell whether we still hold it: report it as lost
      }
      l.lock();
      if (stopping) return;
      if (!renewed) {
        lost.store(true, std::memory_order_release);
        if (on_lost) {
          l.unlock();
          try {
            on_lost();
          } catch (...) {
          }
          l.lock();  // MutexLock's destructor unlocks
        }
        return;
      }
    }
  }

  void stop_watchdog() noexcept {
    {
      detail::MutexLock l(mu);
      stopping = true;
    }
    cv.notify_all();
    if (watchdog.joinable()) watchdog.join();
  }
};

LockLease::LockLease(std::shared_ptr<TokenLock> lock, std::string key, LockToken token,
                     std::chrono::milliseconds ttl, WatchdogOptions watchdog)
    : state_(std::make_unique<State>()) {
  if (!lock) throw std::invalid_argument("stampede::LockLease: lock must not be null");
  state_->lock = std::move(lock);
  state_->key = std::move(key);
  state_->token = std::move(token);
  state_->ttl = ttl;
  if (watchdog.enabled) {
    auto interval = watchdog.interval.count() > 0 ? watchdog.interval : std::max(ttl / 3, std::chrono::milliseconds(1));
    State* s = state_.get();
    s->watchdog = std::thread([s, interval, cb = std::move(watchdog.on_lost)]() mutable {
      s->run_watchdog(interval, std::move(cb));
    });
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
  if (!owns_lock()) return false;
  return state_->lock->renew(state_->key, state_->token.token, state_->ttl);
}

bool LockLease::release() {
  if (!owns_lock()) return false;
  state_->stop_watchdog();
  state_->owned = false;
  return state_->lock->release(state_->key, state_->token.token);
}

}  // namespace stampede
