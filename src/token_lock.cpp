#include "stampede/token_lock.hpp"

#include <algorithm>
#include <stdexcept>

#include "stampede/detail/random.hpp"

namespace stampede {

void TokenLock::check_key(std::string_view key) {
  if (key.empty()) throw std::invalid_argument("stampede::TokenLock: key must not be empty");
}

void TokenLock::check_ttl(std::chrono::milliseconds ttl) {
  if (ttl.count() <= 0) throw std::invalid_argument("stampede::TokenLock: ttl must be > 0");
}

std::optional<LockToken> acquire(TokenLock& lock, std::string_view key, std::chrono::milliseconds ttl,
                                 const AcquireOptions& options) {
  if (options.timeout.count() < 0)
    throw std::invalid_argument("stampede::AcquireOptions.timeout must be >= 0");
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

}  // namespace stampede
