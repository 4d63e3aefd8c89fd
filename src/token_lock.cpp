#include "stampede/token_lock.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <queue>
#include <thread>
#include <vector>

#include <pthread.h>
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
  std::chrono::milliseconds ttl{};
  std::chrono::milliseconds interval{};
  std::function<void()> on_lost;
  std::atomic<bool> lost{false};
  bool owned = true;  // touched only by the lease's owner

  // Held by the renewer while it renews, and by release() while it stops renewals, so that no
  // renewal (and no on_lost call) happens after release() returned.
  detail::Mutex mu;
  bool stopping STAMPEDE_GUARDED_BY(mu) = false;
};

namespace detail {

/// One thread per process renews every watched lease when it is due. A lease registers itself
/// and is dropped lazily (a weak_ptr that expired, or a stopped lease) when its turn comes, so
/// releasing a lease wakes no thread and joins none. Thread-safe.
///
/// Lifetime: created on first use and intentionally never destroyed (a lease may outlive static
/// destruction). In a fork()ed child the parent's instance is abandoned (its thread does not exist
/// there) and a new one is created on the child's first watched lease.
class LeaseRenewer {
 public:
  using steady = std::chrono::steady_clock;

  static LeaseRenewer& instance() {
    LeaseRenewer* r = instance_.load(std::memory_order_acquire);
    if (r != nullptr) return *r;
    std::lock_guard<std::mutex> l(create_mu_);
    r = instance_.load(std::memory_order_acquire);
    if (r == nullptr) {
      static const bool registered = [] {
        ::pthread_atfork(nullptr, nullptr, [] { instance_.store(nullptr, std::memory_order_release); });
        return true;
      }();
      (void)registered;
      r = new LeaseRenewer();  // leaked on purpose, see above
      instance_.store(r, std::memory_order_release);
    }
    return *r;
  }

  void schedule(const std::shared_ptr<LockLease::State>& state, steady::time_point due) {
    {
      MutexLock l(mu_);
      queue_.push(Item{due, state});
      if (!thread_.joinable()) thread_ = std::thread([this] { run(); });
    }
    cv_.notify_one();
  }

 private:
  struct Item {
    steady::time_point due;
    std::weak_ptr<LockLease::State> state;
    bool operator>(const Item& o) const noexcept { return due > o.due; }
  };

  void run() {
    MutexLock l(mu_);
    for (;;) {
      if (queue_.empty()) {
        cv_.wait(l);
        continue;
      }
      const steady::time_point due = queue_.top().due;
      if (steady::now() < due) {
        cv_.wait_until(l, due);
        continue;
      }
      Item item = queue_.top();
      queue_.pop();
      l.unlock();
      renew(item);
      l.lock();
    }
  }

  void renew(const Item& item) {
    std::shared_ptr<LockLease::State> s = item.state.lock();
    if (!s) return;
    MutexLock sl(s->mu);
    if (s->stopping) return;
    bool renewed = false;
    try {
      renewed = s->lock->renew(s->key, s->token.token, s->ttl);
    } catch (const std::exception&) {
      renewed = false;  // cannot tell whether we still hold it: report it as lost
    }
    if (renewed) {
      MutexLock l(mu_);
      queue_.push(Item{steady::now() + s->interval, item.state});
      return;
    }
    s->lost.store(true, std::memory_order_release);
    if (s->on_lost) {
      try {
        s->on_lost();
      } catch (...) {
      }
    }
  }

  static inline std::atomic<LeaseRenewer*> instance_{nullptr};
  static inline std::mutex create_mu_;

  Mutex mu_;
  std::condition_variable_any cv_;
  std::priority_queue<Item, std::vector<Item>, std::greater<>> queue_ STAMPEDE_GUARDED_BY(mu_);
  std::thread thread_ STAMPEDE_GUARDED_BY(mu_);
};

}  // namespace detail

LockLease::LockLease(std::shared_ptr<TokenLock> lock, std::string key, LockToken token,
                     std::chrono::milliseconds ttl, WatchdogOptions watchdog)
    : state_(std::make_shared<State>()) {
  if (!lock) throw std::invalid_argument("stampede::LockLease: lock must not be null");
  state_->lock = std::move(lock);
  state_->key = std::move(key);
  state_->token = std::move(token);
  state_->ttl = ttl;
  if (watchdog.enabled) {
    state_->interval = watchdog.interval.count() > 0 ? watchdog.interval
                                                     : std::max(ttl / 3, std::chrono::milliseconds(1));
    state_->on_lost = std::move(watchdog.on_lost);
    detail::LeaseRenewer::instance().schedule(state_, std::chrono::steady_clock::now() + state_->interval);
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
  {
    detail::MutexLock l(state_->mu);  // waits for a renewal in progress
    state_->stopping = true;
  }
  state_->owned = false;
  return state_->lock->release(state_->key, state_->token.token);
}

}  // namespace stampede
