// stampede/detail/lease_renewer.hpp: the watchdog behind LockLease: renews every watched lease
// of the process when it is due.
//
// A LockLease with its watchdog on hands its LeaseState to the renewer at construction and takes
// it back in release().
//
//   auto s = std::make_shared<detail::LeaseState>(...);
//   detail::LeaseRenewer::schedule(detail::LeaseRenewer::core(), s, now + s->interval);
//   { detail::MutexLock l(s->mu); s->stopping = true; detail::LeaseRenewer::cancel(*s); }
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>

#include "stampede/detail/thread_annotations.hpp"
#include "stampede/export.hpp"
#include "stampede/token_lock.hpp"

namespace stampede::detail {

struct LeaseState;

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
  using Schedule = std::map<std::pair<steady::time_point, std::uint64_t>, std::weak_ptr<LeaseState>>;

  static constexpr int kMaxWorkers = 8;
  static constexpr std::chrono::seconds kWorkerIdle{10};
  static constexpr std::chrono::milliseconds kFirstRetry{10};
  static constexpr std::chrono::milliseconds kMaxRetry{250};

  /// The renewer's state in one process (one fork generation).
  struct Core {
    explicit Core(std::uint64_t gen) : generation(gen) {}
    const std::uint64_t generation;
    Mutex mu;
    std::condition_variable_any scheduler_cv;  // the scheduler waits for the first due time
    std::condition_variable_any worker_cv;     // idle workers wait for due leases
    Schedule schedule STAMPEDE_GUARDED_BY(mu);
    std::deque<std::shared_ptr<LeaseState>> due STAMPEDE_GUARDED_BY(mu);  // handed to the workers
    std::uint64_t sequence STAMPEDE_GUARDED_BY(mu) = 0;
    bool scheduler_started STAMPEDE_GUARDED_BY(mu) = false;
    int workers STAMPEDE_GUARDED_BY(mu) = 0;
    int idle STAMPEDE_GUARDED_BY(mu) = 0;  // workers not (yet) busy with a renewal
  };

  /// @return this process's core, built on first use (and again in a fork()ed child).
  static Core& core();
  /// Puts `s` (not scheduled now) in the schedule of `c` for `due`; starts the scheduler.
  /// @throws std::system_error if the scheduler thread cannot be started (nothing is scheduled).
  static void schedule(Core& c, const std::shared_ptr<LeaseState>& s, steady::time_point due);
  /// Removes `s` from the schedule, if it is there. The caller holds s.mu and has set s.stopping.
  static void cancel(LeaseState& s);
  /// @return leases scheduled or due in this process's core.
  static std::size_t pending();

 private:
  static void run_scheduler(Core& c);
  static void run_worker(Core& c);
  static void start_workers(Core& c) STAMPEDE_REQUIRES(c.mu);
  static void renew(Core& c, const std::shared_ptr<LeaseState>& s);
};

/// One lease: what its LockLease and the renewer share. Thread-safety by field: the LockLease sets
/// `lock` to `generation` before it schedules the lease and never changes them after; `lost` is
/// atomic; `owned` is its owner's alone; the rest is guarded as noted.
struct LeaseState {
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
  Mutex mu;
  bool stopping STAMPEDE_GUARDED_BY(mu) = false;
  steady::time_point expiry STAMPEDE_GUARDED_BY(mu);   // known expiry: last success + ttl
  steady::duration backoff STAMPEDE_GUARDED_BY(mu){};  // 0 after a success

  // Where the lease sits in the renewer's schedule; guarded by the Core::mu of `core` (null when
  // the lease is not scheduled: being renewed, handed to a worker, stopped or lost).
  LeaseRenewer::Core* core = nullptr;
  LeaseRenewer::Schedule::iterator slot;
};

/// @return the watched leases this process's renewer tracks now (scheduled, or due and waiting
///         for a renewal worker). Released leases are not counted. For tests and diagnostics.
///         Thread-safe.
STAMPEDE_EXPORT std::size_t lease_renewer_pending();

}  // namespace stampede::detail
