#include "stampede/token_lock.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <utility>

#include "stampede/detail/fork.hpp"
#include "stampede/detail/thread_annotations.hpp"
#include "stampede/errors.hpp"

namespace stampede {

namespace detail {
std::chrono::nanoseconds jittered(std::chrono::nanoseconds d, double spread) noexcept;
}  // namespace detail

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

// ---- LockLease ---------------------------------------------------------------------------------

namespace detail {

/// Renews every watched lease of this process when it is due. Thread-safe; all members static.
///
/// A scheduler thread keeps the leases in an ordered map keyed by (due time, sequence number) and
/// hands each due lease to a pool of renewal workers, so a renewal that blocks (a slow or paused
/// server) delays only its own lease. Workers start on demand, up to kMaxWorkers at once, and
/// leave after kWorkerIdle without work; with kMaxWorkers renewals blocked at once, further due
/// leases wait for the first of them to finish. A lease is in the map at most once and is renewed
/// by one worker at a time; it goes back into the map after each renewal, and release() erases
/// it at once (the lease keeps its map iterator).
///
/// A renewal that throws (the server failed: it cannot tell whether the lease is still ours) is
/// retried after a short backoff (kFirstRetry, doubling up to kMaxRetry) until the lease's known
/// expiry: the steady_clock time of the lease's construction or of the start of its last
/// successful renewal, plus its TTL. The lease is lost when a renewal returns false (a definite
/// refusal) or when one fails at or after the known expiry.
///
/// Lifetime and fork(): the state (map, mutex, threads) lives in a Core built on first use and
/// never destroyed (a lease may outlive static destruction); its threads are detached. A fork()ed
/// child builds a fresh Core on first use and abandons the parent's (whose threads do not exist
/// there and whose mutex may be held). The child therefore renews only the leases it makes
/// itself; leases inherited from the parent are neither renewed nor released in the child.
class LeaseRenewer {
 public:
  using steady = std::chrono::steady_clock;
  using State = LockLease::State;
  using Schedule = std::map<std::pair<steady::time_point, std::uint64_t>, std::weak_ptr<State>>;

  static constexpr int kMaxWorkers = 8;
  static constexpr std::chrono::seconds kWorkerIdle{10};
  static constexpr std::chrono::milliseconds kFirstRetry{10};
  static constexpr std::chrono::milliseconds kMaxRetry{250};

  /// The renewer's state in one process (one fork generation).
  struct Core {
    Core(std::uint64_t gen, Core* prev) : generation(gen), previous(prev) {}
    const std::uint64_t generation;
    Core* const previous;  // the abandoned core of the parent process, kept reachable
    Mutex mu;
    std::condition_variable_any scheduler_cv;  // the scheduler waits for the first due time
    std::condition_variable_any worker_cv;     // idle workers wait for due leases
    Schedule schedule STAMPEDE_GUARDED_BY(mu);
    std::deque<std::shared_ptr<State>> due STAMPEDE_GUARDED_BY(mu);  // handed to the workers
    std::uint64_t sequence STAMPEDE_GUARDED_BY(mu) = 0;
    bool scheduler_started STAMPEDE_GUARDED_BY(mu) = false;
    int workers STAMPEDE_GUARDED_BY(mu) = 0;
    int idle STAMPEDE_GUARDED_BY(mu) = 0;  // workers not (yet) busy with a renewal
  };

  /// @return this process's core, built on first use (and again in a fork()ed child).
  static Core& core();
  /// Puts `s` (not scheduled now) in the schedule of `c` for `due`; starts the scheduler.
  /// @throws std::system_error if the scheduler thread cannot be started (nothing is scheduled).
  static void schedule(Core& c, const std::shared_ptr<State>& s, steady::time_point due);
  /// Removes `s` from the schedule, if it is there. The caller holds s.mu and has set s.stopping.
  static void cancel(State& s);
  /// @return leases scheduled or due in this process's core.
  static std::size_t pending();

 private:
  static void run_scheduler(Core& c);
  static void run_worker(Core& c);
  static void start_workers(Core& c) STAMPEDE_REQUIRES(c.mu);
  static void renew(Core& c, const std::shared_ptr<State>& s);

  static inline std::atomic<Core*> core_{nullptr};
};

}  // namespace detail

struct LockLease::State {
  using steady = std::chrono::steady_clock;

  std::shared_ptr<TokenLock> lock;
  std::string key;
  LockToken token;
  std::chrono::milliseconds ttl{};
  std::chrono::milliseconds interval{};
  std::function<void()> on_lost;
  bool watched = false;
  std::uint64_t generation = 0;  // fork generation of the process that made the lease
  std::atomic<bool> lost{false};
  bool owned = true;  // touched only by the lease's owner

  // Held by a renewal worker while it renews, and by release() while it stops renewals, so that
  // no renewal (and no on_lost call) happens after release() returned. Taken before the
  // renewer's Core::mu, never after it.
  detail::Mutex mu;
  bool stopping STAMPEDE_GUARDED_BY(mu) = false;
  steady::time_point expiry STAMPEDE_GUARDED_BY(mu);   // known expiry: last success + ttl
  steady::duration backoff STAMPEDE_GUARDED_BY(mu){};  // 0 after a success

  // Where the lease sits in the renewer's schedule; guarded by the Core::mu of `core` (null when
  // the lease is not scheduled: being renewed, handed to a worker, stopped or lost).
  detail::LeaseRenewer::Core* core = nullptr;
  detail::LeaseRenewer::Schedule::iterator slot;
};

namespace detail {

LeaseRenewer::Core& LeaseRenewer::core() {
  const std::uint64_t generation = fork_generation();
  Core* c = core_.load(std::memory_order_acquire);
  while (c == nullptr || c->generation != generation) {
    // First use, or first use in a fork()ed child: the parent's core is abandoned, not destroyed.
    auto* fresh = new Core(generation, c);
    if (core_.compare_exchange_strong(c, fresh, std::memory_order_acq_rel, std::memory_order_acquire)) {
      return *fresh;
    }
    delete fresh;  // another thread installed one; `c` is now that one
  }
  return *c;
}

void LeaseRenewer::schedule(Core& c, const std::shared_ptr<State>& s, steady::time_point due) {
  bool first = false;
  {
    MutexLock l(c.mu);
    if (!c.scheduler_started) {
      std::thread([&c] { run_scheduler(c); }).detach();
      c.scheduler_started = true;
    }
    auto it = c.schedule.emplace(std::make_pair(due, c.sequence++), s).first;
    s->core = &c;
    s->slot = it;
    first = it == c.schedule.begin();
  }
  if (first) c.scheduler_cv.notify_one();  // the scheduler may be waiting for a later time
}

void LeaseRenewer::cancel(State& s) {
  Core& c = core();
  MutexLock l(c.mu);
  if (s.core == &c) {
    c.schedule.erase(s.slot);
    s.core = nullptr;
  }
}

std::size_t LeaseRenewer::pending() {
  Core& c = core();
  MutexLock l(c.mu);
  return c.schedule.size() + c.due.size();
}

void LeaseRenewer::run_scheduler(Core& c) {
  MutexLock l(c.mu);
  for (;;) {
    if (c.schedule.empty()) {
      c.scheduler_cv.wait(l);
      continue;
    }
    const steady::time_point first = c.schedule.begin()->first.first;
    const steady::time_point now = steady::now();
    if (now < first) {
      c.scheduler_cv.wait_until(l, first);
      continue;
    }
    while (!c.schedule.empty() && c.schedule.begin()->first.first <= now) {
      auto it = c.schedule.begin();
      std::shared_ptr<State> s = it->second.lock();
      c.schedule.erase(it);
      if (!s) continue;  // a lease always cancels before it dies; kept as a safety net
      s->core = nullptr;
      c.due.push_back(std::move(s));
    }
    start_workers(c);
    c.worker_cv.notify_all();
  }
}

void LeaseRenewer::start_workers(Core& c) {
  // Every due lease gets a worker of its own while the pool is below its bound.
  while (static_cast<std::size_t>(c.idle) < c.due.size() && c.workers < kMaxWorkers) {
    try {
      std::thread([&c] { run_worker(c); }).detach();
    } catch (const std::system_error&) {
      if (c.workers > 0) return;  // the running workers will get to it
      // No worker at all and none can be started: renew one lease here rather than none.
      std::shared_ptr<State> s = std::move(c.due.front());
      c.due.pop_front();
      c.mu.unlock();
      renew(c, s);
      s.reset();
      c.mu.lock();
      continue;
    }
    ++c.workers;
    ++c.idle;  // counted as idle until it takes a lease, so the next pass does not over-start
  }
}

void LeaseRenewer::run_worker(Core& c) {
  MutexLock l(c.mu);
  for (;;) {
    if (c.due.empty()) {
      if (c.worker_cv.wait_for(l, kWorkerIdle) == std::cv_status::timeout && c.due.empty()) {
        --c.idle;
        --c.workers;
        return;
      }
      continue;
    }
    std::shared_ptr<State> s = std::move(c.due.front());
    c.due.pop_front();
    --c.idle;
    l.unlock();
    renew(c, s);
    s.reset();  // may destroy the lease state (and its TokenLock): not under c.mu
    l.lock();
    ++c.idle;
  }
}

void LeaseRenewer::renew(Core& c, const std::shared_ptr<State>& s) {
  MutexLock sl(s->mu);
  if (s->stopping) return;
  enum class Outcome { renewed, refused, unknown };
  Outcome outcome = Outcome::unknown;
  const steady::time_point start = steady::now();
  try {
    outcome = s->lock->renew(s->key, s->token.token, s->ttl) ? Outcome::renewed : Outcome::refused;
  } catch (...) {
    outcome = Outcome::unknown;  // the server failed: the lease may or may not still be ours
  }
  const steady::time_point now = steady::now();
  try {
    if (outcome == Outcome::renewed) {
      s->expiry = start + s->ttl;  // the server counts from when it saw the renewal, after `start`
      s->backoff = {};
      schedule(c, s, now + s->interval);
      return;
    }
    if (outcome == Outcome::unknown && now < s->expiry) {
      s->backoff = s->backoff == steady::duration{} ? steady::duration(kFirstRetry)
                                                    : std::min<steady::duration>(s->backoff * 2, kMaxRetry);
      // The last attempt is at the known expiry: if that one fails too, the lease is lost.
      schedule(c, s, std::min(now + s->backoff, s->expiry));
      return;
    }
  } catch (const std::exception&) {
    // Out of memory for the schedule: the lease can no longer be watched, so report it lost.
  }
  s->lost.store(true, std::memory_order_release);
  if (s->on_lost) {
    try {
      s->on_lost();
    } catch (...) {
    }
  }
}

std::size_t lease_renewer_pending() { return LeaseRenewer::pending(); }

}  // namespace detail

LockLease::LockLease(std::shared_ptr<TokenLock> lock, std::string key, LockToken token,
                     std::chrono::milliseconds ttl, WatchdogOptions watchdog)
    : state_(std::make_shared<State>()) {
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
