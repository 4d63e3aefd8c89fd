// stampede/detail/cache_lead-inl.hpp: the leader of a key's flight: join or lead (load_missing), take the
// lock, look again, run the loader, store under the fence and publish; the hand-off to a background load;
// fail-safe. Part of the bodies of Cache<T> (cache-inl.hpp includes it); read cache.hpp for the API and
// docs/design.md ("Follow one call") for the path through these files.
#pragma once

#include <algorithm>
#include <chrono>
#include <exception>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <utility>

#include "stampede/detail/deadline.hpp"
#include "stampede/detail/random.hpp"
#include "stampede/errors.hpp"
#include "stampede/lease.hpp"

namespace stampede {

template <class T>
T Cache<T>::load_missing(std::string_view key, detail::LoaderRef<T> loader, const CallOptions& call) {
  for (bool counted = false;; counted = true) {
    auto [flight, leader] = flights_.join(key);
    // Counted once the flight knows of this caller: a miss in stats() is a caller that has joined.
    if (!counted) count(Counter::misses);
    if (leader) return lead_flight(key, loader, std::move(flight), call);
    if (std::optional<T> v = await_flight(key, loader, *flight, call)) return std::move(*v);
    // The leader gave up before loading (its caller's stop was requested): join the key again.
  }
}

template <class T>
T Cache<T>::lead_flight(std::string_view key, detail::LoaderRef<T> loader,
                        std::shared_ptr<detail::Flight<T>> flight, const CallOptions& call) {
  // The leader's interest goes when its stop is requested, even while its own thread is in the
  // loader: with every waiter gone too, the loader's stop token fires.
  detail::FlightInterest<T> interest(*flight);
  std::stop_callback give_up(call.stop, [&interest]() noexcept { interest.drop(); });
  Led led;
  try {
    led = lead(key, loader, flight, call);
  } catch (...) {
    flights_.leave(key, flight.get());
    flight->set_error(std::current_exception());
    throw;
  }
  // A load in the background publishes, stores and leaves the table itself.
  if (led.in_background) return await_background(key, *flight, call);
  flights_.leave(key, flight.get());
  if (!led.value) {  // stopped before it loaded anything: its waiters start over without it
    flight->abandon();
    throw_cancelled(key);
  }
  flight->set_value(*led.value);  // no-op if lead() already published it
  return std::move(*led.value);
}

template <class T>
void Cache<T>::throw_cancelled(std::string_view key) {
  count(Counter::cancelled);
  throw cancelled_error("stampede: the caller stopped waiting for the load of '" + std::string(key) + "'");
}

template <class T>
typename Cache<T>::Led Cache<T>::lead(std::string_view key, detail::LoaderRef<T> loader,
                                      const std::shared_ptr<detail::Flight<T>>& flight,
                                      const CallOptions& call) {
  TokenLock& lock = *backend_.lock;
  const auto deadline = detail::deadline_after(wait_timeout(call));
  bool can_subscribe = true;
  LoadContext context(flight->load_stop_token());
  for (;;) {
    std::optional<LockToken> token;
    try {
      token = lock.try_acquire(key, options_.lock_ttl);
    } catch (const backend_error& e) {
      on_backend_error(key, e);  // throws under fail_closed
      std::chrono::nanoseconds took{};
      return Led::done(run_loader(key, loader, context, took));  // fail_open: this process's flight only
    }
    if (token) {
      count(Counter::lock_acquired);
      emit(EventType::lock_acquired, key);
      auto report_lost = [this, k = std::string(key)] {
        emit(EventType::lock_lost, k, "watchdog could not renew the lease");
      };
      WatchdogOptions watchdog{.enabled = true, .interval = {}, .on_lost = std::move(report_lost)};
      LockLease lease(backend_.lock, std::string(key), *token, options_.lock_ttl, std::move(watchdog));
      // Double check: another process may have stored while we were taking the lock. Read past any
      // local copy of the store: one that lags could hand out a value another process invalidated.
      if (std::optional<Entry<T>> e = read_servable(key, clock_->now(), Read::authoritative)) {
        count(Counter::coalesced);
        return Led::done(std::move(e->value));
      }
      if (loader_timeouts()) {
        std::optional<Entry<T>> old = read(key, time_point::min());  // expired, still held
        if (hand_off(key, loader, flight, lease, token->fence, context)) {
          // With an old value the soft timeout applies (else the hard one); either may be off.
          // The limit is the flight's: every caller of it applies it, not only this one.
          std::chrono::milliseconds limit = options_.loader_hard_timeout;
          if (old && options_.loader_soft_timeout.count() > 0) limit = options_.loader_soft_timeout;
          if (limit.count() > 0) {
            flight->set_load_limit(detail::deadline_after(limit),
                                   old ? std::optional<T>(std::move(old->value)) : std::nullopt);
          }
          return {std::nullopt, true};
        }
      }
      T value = load_and_store(key, loader, context, token->fence, *flight,
                               Wake::before_store);  // throws: ~LockLease releases
      try {
        lease.release();  // also wakes the waiters of other processes
      } catch (const backend_error& e) {
        on_backend_error(key, e);
      }
      return Led::done(std::move(value));
    }

    // Another process is loading: wait for its value (signal, with a poll fallback).
    count(Counter::lock_contended);
    std::unique_ptr<Subscription> sub = subscribe(key, can_subscribe);  // before the re-check
    if (std::optional<Entry<T>> e = read_servable(key, clock_->now())) {
      count(Counter::coalesced);
      return Led::done(std::move(e->value));
    }
    if (call.stop.stop_requested()) return {};
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) break;
    const auto poll = detail::jittered(options_.poll_interval, 0.25);
    wait_for_signal(key, sub.get(), std::min<std::chrono::steady_clock::time_point>(deadline, now + poll),
                    can_subscribe);
    if (std::optional<Entry<T>> e = read_servable(key, clock_->now())) {
      count(Counter::coalesced);
      return Led::done(std::move(e->value));
    }
    if (call.stop.stop_requested()) return {};
    if (std::chrono::steady_clock::now() >= deadline) break;
    // Woken (or polled): the holder stored, released after a failure, or expired. Try again.
  }
  count(Counter::wait_timeouts);
  emit(EventType::lock_timeout, key, "another process holds the lock");
  return Led::done(on_wait_timeout(key, loader, *flight, call));
}

template <class T>
bool Cache<T>::hand_off(std::string_view key, detail::LoaderRef<T> loader,
                        const std::shared_ptr<detail::Flight<T>>& flight, LockLease& lease,
                        std::uint64_t fence, const LoadContext& context) {
  // The load must outlive this call: a loader that cannot be copied runs here.
  if (!loader.copyable()) return false;
  // The job owns what the load needs after the caller left: a copy of the loader, the lease
  // (renewed by its watchdog until the load is done) and the flight.
  struct Job {
    std::string key;
    detail::OwnedLoader<T> loader;
    LockLease lease;
    std::uint64_t fence;
    LoadContext context;
    std::shared_ptr<detail::Flight<T>> flight;
  };
  auto job =
      std::make_shared<Job>(Job{std::string(key), loader.copy(), std::move(lease), fence, context, flight});
  auto run = [this, job] {
    // ~Cache requests the loader's stop token (it waits for this job to finish).
    std::stop_callback on_shutdown(shutdown_.get_token(),
                                   [&job]() noexcept { job->flight->request_load_stop(); });
    try {
      // Publishing is a no-op if a timeout already handed out an old value; the store is fenced.
      (void)load_and_store(job->key, detail::LoaderRef<T>(job->loader), job->context, job->fence,
                           *job->flight, Wake::after_store);
      job->lease.release();
    } catch (...) {
      // An error is published after the flight left the table: a caller that arrives later
      // starts a new load instead of getting this one's error. Counted by run_loader.
      flights_.leave(job->key, job->flight.get());
      job->flight->set_error(std::current_exception());
      return;
    }
    flights_.leave(job->key, job->flight.get());
  };
  // One job per fence (the fence's digits end at the first '#'): a job that is still finishing
  // after its lock was released must not send the next load of its key to the caller's thread.
  if (loads_.submit(std::to_string(fence) + '#' + std::string(key), run) ==
      detail::Refresher::Submit::queued) {
    count(Counter::background_loads);
    return true;
  }
  lease = std::move(job->lease);  // every background thread busy: load on this thread
  return false;
}

template <class T>
T Cache<T>::run_loader(std::string_view key, detail::LoaderRef<T> loader, LoadContext& context,
                       std::chrono::nanoseconds& took) {
  const auto start = std::chrono::steady_clock::now();
  try {
    T value = loader(context);
    took = std::chrono::steady_clock::now() - start;
    count(Counter::loads);
    count(Counter::load_time, static_cast<std::uint64_t>(took.count()));
    emit(EventType::load_done, key, {}, took);
    return value;
  } catch (const std::exception& e) {
    took = std::chrono::steady_clock::now() - start;
    count(Counter::loads);
    count(Counter::load_failures);
    emit(EventType::load_failed, key, e.what(), took);
    throw;
  } catch (...) {
    took = std::chrono::steady_clock::now() - start;
    count(Counter::loads);
    count(Counter::load_failures);
    emit(EventType::load_failed, key, "non-std exception", took);
    throw;
  }
}

template <class T>
T Cache<T>::load_and_store(std::string_view key, detail::LoaderRef<T> loader, LoadContext& context,
                           std::uint64_t fence, detail::Flight<T>& flight, Wake wake) {
  std::chrono::nanoseconds took{};
  std::optional<T> value;
  try {
    value.emplace(run_loader(key, loader, context, took));
  } catch (const std::exception& error) {
    value = fail_safe(key, fence, error.what());
    if (!value) throw;
    flight.set_value(*value);
    return std::move(*value);
  }
  // A foreground load's waiters need neither the store write nor the release: wake them now.
  if (wake == Wake::before_store) flight.set_value(*value);
  store_loaded(key, *value, fence, took, context.ttl());
  flight.set_value(*value);  // no-op if already published
  return std::move(*value);
}

template <class T>
std::optional<T> Cache<T>::fail_safe(std::string_view key, std::uint64_t fence, std::string_view error) {
  if (options_.fail_safe_max_age.count() == 0) return std::nullopt;
  const time_point now = clock_->now();
  std::optional<Entry<T>> last_good = read(key, now);  // kept until fail_safe_max_age past expiry
  if (!last_good) return std::nullopt;
  // Re-arm it in the shared store, under this load's fence: fresh for the throttle, never past
  // the last good deadline. Only if the store still holds that very entry: `last_good` may be a
  // copy that lags the store (a near cache), and a value that an invalidate() or put() replaced
  // since it was stored is no longer the last good one, so it is neither re-armed nor served.
  Entry<T> rearmed = *last_good;
  rearmed.fence = fence;
  rearmed.soft_expiry = std::min(now + options_.fail_safe_throttle, last_good->hard_expiry);
  try {
    if (backend_.store->put_if_unchanged(key, last_good->fence, rearmed, now) == PutResult::stale_fence) {
      count(Counter::stale_writes_rejected);
      emit(EventType::stale_write_rejected, key, "fail-safe: the last good value was replaced or removed");
      return std::nullopt;
    }
  } catch (const backend_error& e) {
    // The store cannot be asked (an outage: what fail-safe is for): serve what was read.
    count(Counter::backend_errors);
    emit(EventType::backend_error, key, e.what());
  } catch (const codec_error& e) {
    count(Counter::store_failures);
    emit(EventType::store_failed, key, e.what());
  }
  count(Counter::fail_safe_served);
  emit(EventType::fail_safe, key, error);
  return std::move(last_good->value);
}

}  // namespace stampede
