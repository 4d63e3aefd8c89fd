#include <condition_variable>
#include <stdexcept>
#include <unordered_map>

#include "stampede/detail/thread_annotations.hpp"
#include "stampede/detail/token.hpp"
#include "stampede/memory.hpp"

namespace stampede {
namespace {

constexpr std::size_t kLockStripes = 64;

void check(std::string_view key, std::chrono::milliseconds ttl) {
  if (key.empty()) throw std::invalid_argument("stampede::TokenLock: key must not be empty");
  if (ttl.count() <= 0) throw std::invalid_argument("stampede::TokenLock: ttl must be > 0");
}

}  // namespace

struct MemoryTokenLock::Stripe {
  struct Holder {
    std::string token;
    Clock::time_point expiry;
  };
  detail::Mutex mu;
  std::condition_variable_any cv;
  // Bumped by every release/notify of any key of this stripe; waiters compare against it.
  std::uint64_t generation STAMPEDE_GUARDED_BY(mu) = 0;
  std::unordered_map<std::string, Holder, detail::StringHash, std::equal_to<>> holders STAMPEDE_GUARDED_BY(mu);
  std::unordered_map<std::string, std::uint64_t, detail::StringHash, std::equal_to<>> fences STAMPEDE_GUARDED_BY(mu);

  std::uint64_t next_fence(std::string_view key) STAMPEDE_REQUIRES(mu) {
    auto it = fences.find(key);
    if (it == fences.end()) it = fences.emplace(std::string(key), 0).first;
    return ++it->second;
  }
  void signal() STAMPEDE_REQUIRES(mu) {
    ++generation;
    cv.notify_all();
  }
};

class MemoryTokenLock::StripeSubscription final : public Subscription {
 public:
  StripeSubscription(Stripe& stripe, std::uint64_t generation) : stripe_(stripe), seen_(generation) {}
  bool wait_until(std::chrono::steady_clock::time_point deadline) override {
    detail::MutexLock l(stripe_.mu);
    return stripe_.cv.wait_until(l, deadline, [this]() STAMPEDE_NO_THREAD_SAFETY_ANALYSIS {
      return stripe_.generation != seen_;
    });
  }

 private:
  Stripe& stripe_;
  std::uint64_t seen_;
};

MemoryTokenLock::MemoryTokenLock(std::shared_ptr<const Clock> clock)
    : clock_(clock ? std::move(clock) : system_clock()), stripes_(new Stripe[kLockStripes]) {}

MemoryTokenLock::~MemoryTokenLock() = default;

MemoryTokenLock::Stripe& MemoryTokenLock::stripe_for(std::string_view key) const noexcept {
  return stripes_[std::hash<std::string_view>{}(key) % kLockStripes];
}

std::optional<LockToken> MemoryTokenLock::try_acquire(std::string_view key, std::chrono::milliseconds ttl) {
  check(key, ttl);
  Stripe& s = stripe_for(key);
  const auto now = clock_->now();
  detail::MutexLock l(s.mu);
  auto it = s.holders.find(key);
  if (it != s.holders.end() && now < it->second.expiry) return std::nullopt;
  LockToken token{detail::random_token(), s.next_fence(key)};
  Stripe::Holder holder{token.token, now + ttl};
  if (it == s.holders.end()) {
    s.holders.emplace(std::string(key), std::move(holder));
  } else {
    it->second = std::move(holder);
  }
  return token;
}

bool MemoryTokenLock::release(std::string_view key, std::string_view token) {
  Stripe& s = stripe_for(key);
  const auto now = clock_->now();
  detail::MutexLock l(s.mu);
  auto it = s.holders.find(key);
  if (it == s.holders.end() || it->second.token != token) return false;
  const bool unexpired = now < it->second.expiry;
  s.holders.erase(it);  // an expired entry of ours is garbage either way
  s.signal();
  return unexpired;
}

bool MemoryTokenLock::renew(std::string_view key, std::string_view token, std::chrono::milliseconds ttl) {
  check(key, ttl);
  Stripe& s = stripe_for(key);
  const auto now = clock_->now();
  detail::MutexLock l(s.mu);
  auto it = s.holders.find(key);
  if (it == s.holders.end() || it->second.token != token || now >= it->second.expiry) return false;
  it->second.expiry = now + ttl;
  return true;
}

std::uint64_t MemoryTokenLock::bump_fence(std::string_view key) {
  if (key.empty()) throw std::invalid_argument("stampede::TokenLock: key must not be empty");
  Stripe& s = stripe_for(key);
  detail::MutexLock l(s.mu);
  return s.next_fence(key);
}

std::unique_ptr<Subscription> MemoryTokenLock::subscribe(std::string_view key) {
  Stripe& s = stripe_for(key);
  detail::MutexLock l(s.mu);
  return std::make_unique<StripeSubscription>(s, s.generation);
}

void MemoryTokenLock::notify(std::string_view key) {
  Stripe& s = stripe_for(key);
  detail::MutexLock l(s.mu);
  s.signal();
}

std::optional<std::string> MemoryTokenLock::holder(std::string_view key) const {
  Stripe& s = stripe_for(key);
  const auto now = clock_->now();
  detail::MutexLock l(s.mu);
  auto it = s.holders.find(key);
  if (it == s.holders.end() || now >= it->second.expiry) return std::nullopt;
  return it->second.token;
}

}  // namespace stampede

namespace stampede {
std::size_t MemoryTokenLock::tracked_keys() const {
  std::size_t n = 0;
  for (std::size_t i = 0; i < kLockStripes; ++i) {
    detail::MutexLock l(stripes_[i].mu);
    n += stripes_[i].holders.size() + stripes_[i].fences.size();
  }
  return n;
}
}  // namespace stampede
