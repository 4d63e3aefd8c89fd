#include "stampede/detail/lease_renewer.hpp"

#include <algorithm>
#include <exception>
#include <system_error>
#include <thread>

#include "stampede/detail/fork.hpp"

namespace stampede::detail {
namespace {
// This process's core; replaced (the old one abandoned) in a fork()ed child.
std::atomic<LeaseRenewer::Core*> current_core{nullptr};
}  // namespace

LeaseRenewer::Core& LeaseRenewer::core() {
  const std::uint64_t generation = fork_generation();
  Core* c = current_core.load(std::memory_order_acquire);
  while (c == nullptr || c->generation != generation) {
    // First use, or first use in a fork()ed child: the parent's core is abandoned, not destroyed.
    auto* fresh = new Core(generation);
    if (current_core.compare_exchange_strong(c, fresh, std::memory_order_acq_rel,
                                             std::memory_order_acquire)) {
      if (c != nullptr) keep_abandoned(c);
      return *fresh;
    }
    delete fresh;  // another thread installed one; `c` is now that one
  }
  return *c;
}

void LeaseRenewer::schedule(Core& c, const std::shared_ptr<LeaseState>& s, steady::time_point due) {
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

void LeaseRenewer::cancel(LeaseState& s) {
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
      std::shared_ptr<LeaseState> s = it->second.lock();
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
      std::shared_ptr<LeaseState> s = std::move(c.due.front());
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
    std::shared_ptr<LeaseState> s = std::move(c.due.front());
    c.due.pop_front();
    --c.idle;
    l.unlock();
    renew(c, s);
    s.reset();  // may destroy the lease state (and its TokenLock): not under c.mu
    l.lock();
    ++c.idle;
  }
}

void LeaseRenewer::renew(Core& c, const std::shared_ptr<LeaseState>& s) {
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

}  // namespace stampede::detail
