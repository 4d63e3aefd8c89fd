#include "stampede/memory/token_lock.hpp"

#include <condition_variable>
#include <unordered_map>

#include "stampede/detail/fork.hpp"
#include "stampede/detail/random.hpp"
#include "stampede/detail/string_hash.hpp"
#include "stampede/detail/thread_annotations.hpp"

namespace stampede {

namespace {

constexpr std::size_t kLockStripes = 64;
// Buckets of its own stripe that every try_acquire sweeps for expired holders; every kSweepEvery-th
// try_acquire also sweeps kFarSweepBuckets of a rotating stripe, so stripes nobody locks are swept.
constexpr std::size_t kSweepBuckets = 4;
constexpr std::uint64_t kSweepEvery = 8;
constexpr std::size_t kFarSweepBuckets = 32;
constexpr std::size_t kMinBuckets = 64;

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
  std::unordered_map<std::string, Holder, detail::StringHash, detail::StringEqual> holders
      STAMPEDE_GUARDED_BY(mu);
  std::size_t sweep_cursor STAMPEDE_GUARDED_BY(mu) = 0;

  void signal() STAMPEDE_REQUIRES(mu) {
    ++generation;
    cv.notify_all();
  }
  // Drops the expired holders of the next `buckets` buckets.
  void sweep(Clock::time_point now, std::size_t buckets) STAMPEDE_REQUIRES(mu) {
    for (std::size_t b = 0; b < buckets; ++b) {
      if (sweep_cursor >= holders.bucket_count()) {
        sweep_cursor = 0;
        if (holders.bucket_count() > kMinBuckets && holders.size() * 4 < holders.bucket_count()) {
          holders.rehash(0);  // a round is over: shrink a table that emptied
        }
      }
      const std::size_t bucket = sweep_cursor++;
      for (auto it = holders.begin(bucket); it != holders.end(bucket);) {
        if (now < it->second.expiry) {
          ++it;
          continue;
        }
        auto victim = holders.find(it->first);
        ++it;  // stays valid: an erase invalidates only iterators to the erased element
        holders.erase(victim);
      }
    }
  }
};

struct MemoryTokenLock::State {
  explicit State(std::uint64_t gen) : generation(gen), stripes(new Stripe[kLockStripes]) {}
  const std::uint64_t generation;  // detail::fork_generation() when built
  std::unique_ptr<Stripe[]> stripes;
  std::atomic<std::uint64_t> acquires{0};
};

class MemoryTokenLock::StripeSubscription final : public Subscription {
 public:
  StripeSubscription(Stripe& stripe, std::uint64_t generation, std::uint64_t fork_generation)
      : stripe_(stripe), seen_(generation), fork_generation_(fork_generation) {}
  bool wait_until(std::chrono::steady_clock::time_point deadline) override {
    // In a fork()ed child the stripe belongs to an abandoned state: its mutex may be held forever.
    if (detail::fork_generation() != fork_generation_) return true;
    detail::MutexLock l(stripe_.mu);
    return stripe_.cv.wait_until(
        l, deadline, [this]() STAMPEDE_NO_THREAD_SAFETY_ANALYSIS { return stripe_.generation != seen_; });
  }

 private:
  Stripe& stripe_;
  std::uint64_t seen_;
  std::uint64_t fork_generation_;
};

MemoryTokenLock::MemoryTokenLock(std::shared_ptr<const Clock> clock)
    : clock_(clock ? std::move(clock) : monotonic_clock()), state_(new State(detail::fork_generation())) {}

MemoryTokenLock::~MemoryTokenLock() { delete state_.load(std::memory_order_acquire); }

MemoryTokenLock::State& MemoryTokenLock::current() const {
  State* st = state_.load(std::memory_order_acquire);
  if (st->generation != detail::fork_generation()) [[unlikely]] {
    // A fork()ed child: no holders; the parent's state is abandoned, never destroyed.
    auto* fresh = new State(detail::fork_generation());
    if (state_.compare_exchange_strong(st, fresh, std::memory_order_acq_rel, std::memory_order_acquire)) {
      detail::keep_abandoned(st);
      st = fresh;
    } else {
      delete fresh;  // another thread of the child replaced it first; `st` is its state
    }
  }
  return *st;
}

MemoryTokenLock::Stripe& MemoryTokenLock::stripe_for(State& state, std::string_view key) noexcept {
  return state.stripes[detail::StringHash{}(key) % kLockStripes];
}

void MemoryTokenLock::sweep_some(State& state, Clock::time_point now) const {
  const std::uint64_t n = state.acquires.fetch_add(1, std::memory_order_relaxed);
  if (n % kSweepEvery != 0) return;
  Stripe& s = state.stripes[(n / kSweepEvery) % kLockStripes];
  detail::MutexLock l(s.mu);
  s.sweep(now, kFarSweepBuckets);
}

std::optional<LockToken> MemoryTokenLock::do_try_acquire(std::string_view key,
                                                         std::chrono::milliseconds ttl) {
  State& st = current();
  const auto now = clock_->now();
  sweep_some(st, now);  // before taking the key's stripe: never two stripe mutexes at once
  Stripe& s = stripe_for(st, key);
  detail::MutexLock l(s.mu);
  s.sweep(now, kSweepBuckets);
  auto it = s.holders.find(key);
  if (it != s.holders.end() && now < it->second.expiry) return std::nullopt;
  LockToken token{detail::random_token(), last_fence_.fetch_add(1, std::memory_order_relaxed) + 1};
  Stripe::Holder holder{token.token, now + ttl};
  if (it == s.holders.end()) {
    s.holders.emplace(std::string(key), std::move(holder));
  } else {
    it->second = std::move(holder);
  }
  return token;
}

bool MemoryTokenLock::do_release(std::string_view key, std::string_view token) {
  Stripe& s = stripe_for(current(), key);
  const auto now = clock_->now();
  detail::MutexLock l(s.mu);
  auto it = s.holders.find(key);
  if (it == s.holders.end() || it->second.token != token) return false;
  const bool unexpired = now < it->second.expiry;
  s.holders.erase(it);  // an expired entry of ours is garbage either way
  s.signal();
  return unexpired;
}

bool MemoryTokenLock::do_renew(std::string_view key, std::string_view token, std::chrono::milliseconds ttl) {
  Stripe& s = stripe_for(current(), key);
  const auto now = clock_->now();
  detail::MutexLock l(s.mu);
  auto it = s.holders.find(key);
  if (it == s.holders.end() || it->second.token != token || now >= it->second.expiry) return false;
  it->second.expiry = now + ttl;
  return true;
}

std::uint64_t MemoryTokenLock::do_bump_fence(std::string_view /*key*/) {
  return last_fence_.fetch_add(1, std::memory_order_relaxed) + 1;
}

std::unique_ptr<Subscription> MemoryTokenLock::do_subscribe(std::string_view key) {
  State& st = current();
  Stripe& s = stripe_for(st, key);
  detail::MutexLock l(s.mu);
  return std::make_unique<StripeSubscription>(s, s.generation, st.generation);
}

void MemoryTokenLock::do_notify(std::string_view key) {
  Stripe& s = stripe_for(current(), key);
  detail::MutexLock l(s.mu);
  s.signal();
}

std::optional<std::string> MemoryTokenLock::holder(std::string_view key) const {
  Stripe& s = stripe_for(current(), key);
  const auto now = clock_->now();
  detail::MutexLock l(s.mu);
  auto it = s.holders.find(key);
  if (it == s.holders.end() || now >= it->second.expiry) return std::nullopt;
  return it->second.token;
}

std::size_t MemoryTokenLock::tracked_keys() const {
  State& st = current();
  std::size_t n = 0;
  for (std::size_t i = 0; i < kLockStripes; ++i) {
    detail::MutexLock l(st.stripes[i].mu);
    n += st.stripes[i].holders.size();
  }
  return n;
}

}  // namespace stampede
