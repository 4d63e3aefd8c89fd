// stampede/detail/cache-inl.hpp: the bodies of Cache<T>. Read cache.hpp for the API.
#pragma once

#include <algorithm>
#include <cmath>
#include <random>
#include <stdexcept>
#include <thread>
#include <utility>

#include "stampede/detail/deadline.hpp"
#include "stampede/detail/random.hpp"
#include "stampede/detail/type_traits.hpp"
#include "stampede/errors.hpp"
#include "stampede/lease.hpp"

namespace stampede {

template <class T>
Cache<T>::Cache(CacheOptions options) : Cache(options, Backend<T>{}) {}

template <class T>
Cache<T>::Cache(CacheOptions options, Backend<T> backend)
    : options_(std::move(options)),
      backend_(std::move(backend)),
      loads_((validate(options_), detail::Refresher::Options{.threads = options_.background_load_threads,
                                                             .queue = options_.background_load_threads,
                                                             .idle_only = true})),
      blocking_(detail::Refresher::Options{.threads = options_.background_load_threads, .queue = 1u << 16}),
      refresher_(detail::Refresher::Options{options_.refresh_threads, options_.refresh_queue}) {
  if (!backend_.store && !backend_.lock) {
    backend_ = memory_backend<T>(options_.max_entries, options_.clock);
  } else if (!backend_.store || !backend_.lock) {
    throw std::invalid_argument("stampede::Cache: backend needs both a store and a lock");
  }
  // Expiries: the caller's clock, else the one the backend wants (memory: monotonic), else wall.
  clock_ = options_.clock ? options_.clock : backend_.clock ? backend_.clock : system_clock();
}

template <class T>
Cache<T>::~Cache() {
  // Pending asynchronous calls complete with an error (none touches the Cache afterwards); the
  // steps of theirs that run on blocking_ are waited for below.
  async_calls_->close();
  // Running refreshes and background loads see their LoadContext's stop token requested, so a
  // loader that honours it lets the destructor finish early.
  shutdown_.request_stop();
  refresher_.stop();
  loads_.stop();
  blocking_.stop();
}

template <class T>
void Cache<T>::check_key(std::string_view key) {
  if (key.empty()) throw std::invalid_argument("stampede::Cache: key must not be empty");
}

template <class T>
void Cache<T>::check_call(std::string_view key, const CallOptions& call) {
  check_key(key);
  if (call.wait_timeout.count() < 0) {
    throw std::invalid_argument("stampede::CallOptions.wait_timeout must be >= 0");
  }
}

template <class T>
template <LoaderFor<T> Loader>
T Cache<T>::get_or_compute(std::string_view key, Loader&& loader, const CallOptions& call) {
  check_call(key, call);
  const time_point now = clock_->now();
  if (std::optional<Entry<T>> e = read_servable(key, now)) {
    after_hit(key, hit_of(*e, now), std::forward<Loader>(loader));
    return std::move(e->value);
  }
  return load_missing(key, detail::LoaderRef<T>(loader), call);
}

template <class T>
template <class Reader, LoaderFor<T> Loader>
  requires std::invocable<Reader&, const T&>
std::invoke_result_t<Reader&, const T&> Cache<T>::visit(std::string_view key, Loader&& loader,
                                                        Reader&& reader, const CallOptions& call) {
  using Result = std::invoke_result_t<Reader&, const T&>;
  static_assert(!std::is_reference_v<Result>,
                "stampede::Cache::visit: the reader must return a value, not a reference into the cached "
                "value (it would dangle once the store lets go of the entry)");
  check_call(key, call);
  const time_point now = clock_->now();
  // On a hit the reader runs inside the store's visit (the entry in place); what it returns or
  // throws is kept until the store let go of the entry, then the hit is counted.
  std::optional<Hit> hit;
  std::conditional_t<std::is_void_v<Result>, bool, std::optional<Result>> result{};
  std::exception_ptr reader_error;
  visit_servable(key, now, [&](const Entry<T>& e) {
    hit = hit_of(e, now);
    try {
      if constexpr (std::is_void_v<Result>) {
        std::invoke(reader, std::as_const(e.value));
      } else {
        result.emplace(std::invoke(reader, std::as_const(e.value)));
      }
    } catch (...) {
      reader_error = std::current_exception();
    }
  });
  if (hit) {
    after_hit(key, *hit, std::forward<Loader>(loader));
    if (reader_error) std::rethrow_exception(reader_error);
    if constexpr (std::is_void_v<Result>) {
      return;
    } else {
      return std::move(*result);
    }
  }
  const T value = load_missing(key, detail::LoaderRef<T>(loader), call);
  return std::invoke(reader, value);
}

template <class T>
typename Cache<T>::Hit Cache<T>::hit_of(const Entry<T>& e, time_point now) const {
  if (now >= e.soft_expiry) return Hit{.stale = true, .refresh = true, .fence = e.fence};  // SWR's window
  const bool early = options_.early_refresh_beta > 0 && xfetch_due(e, now);
  return Hit{.stale = false, .refresh = early, .fence = e.fence};
}

template <class T>
template <class Loader>
void Cache<T>::after_hit(std::string_view key, const Hit& hit, Loader&& loader) {
  count(hit.stale ? Counter::stale_hits : Counter::hits);
  if (hit.refresh) schedule_refresh(key, hit.fence, std::forward<Loader>(loader));
}

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
std::optional<T> Cache<T>::await_flight(std::string_view key, detail::LoaderRef<T> loader,
                                        detail::Flight<T>& flight, const CallOptions& call) {
  detail::FlightInterest<T> interest(flight);  // join() counted this caller; dropped on every exit
  const auto deadline = detail::deadline_after(wait_timeout(call));
  std::optional<T> value;
  for (bool waiting = true; waiting;) {
    switch (flight.wait_until(deadline, call.stop, value)) {
      case detail::Flight<T>::Wait::value:
        count(flight.is_old() ? Counter::stale_served : Counter::coalesced);
        return value;
      case detail::Flight<T>::Wait::abandoned:
        return std::nullopt;
      case detail::Flight<T>::Wait::stopped:
        throw_cancelled(key);
      case detail::Flight<T>::Wait::load_late:
        expire_load(key, flight);  // whoever wakes first applies the loader timeout; wait again
        break;
      case detail::Flight<T>::Wait::timeout:
        waiting = false;
        break;
    }
  }
  count(Counter::wait_timeouts);
  emit(EventType::lock_timeout, key, "in-process flight");
  return on_wait_timeout(key, loader, flight, call);
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
T Cache<T>::await_background(std::string_view key, detail::Flight<T>& flight, const CallOptions& call) {
  std::optional<T> value;
  for (;;) {
    switch (flight.wait_until(std::chrono::steady_clock::time_point::max(), call.stop, value)) {
      case detail::Flight<T>::Wait::value:
        if (flight.is_old()) count(Counter::stale_served);
        return std::move(*value);
      case detail::Flight<T>::Wait::stopped:
        throw_cancelled(key);  // the load and its limit go on for the flight's other callers
      case detail::Flight<T>::Wait::load_late:
        expire_load(key, flight);
        break;
      case detail::Flight<T>::Wait::abandoned:  // only a leader abandons, and this is the leader
      case detail::Flight<T>::Wait::timeout:    // no deadline
        break;
    }
  }
}

template <class T>
void Cache<T>::expire_load(std::string_view key, detail::Flight<T>& flight) {
  if (!flight.claim_expiry()) return;  // another caller of the flight applies it
  const std::optional<T>& old = flight.limit_old();
  emit(EventType::load_timeout, key, old ? "serving the old value" : "nothing old to serve");
  // From now on the store is what wants the load (its stop token is never requested), and later
  // callers may join the flight for the old value until the load leaves the table.
  (void)flight.add_interest();
  if (old) {
    count(Counter::soft_timeouts);
    // Every caller of the flight gets the old value, until the load is done and leaves the table.
    (void)flight.set_value(*old, /*old=*/true);  // no-op if the load published first
    return;
  }
  count(Counter::hard_timeouts);
  flights_.leave(key, &flight);  // later callers wait for the lock the load still holds
  (void)flight.set_error(
      std::make_exception_ptr(timeout_error("stampede: the load of '" + std::string(key) + "' outran " +
                                            std::to_string(options_.loader_hard_timeout.count()) + " ms")));
}

template <class T>
std::unique_ptr<Subscription> Cache<T>::subscribe(std::string_view key, bool& can_subscribe) {
  if (!can_subscribe) return nullptr;
  try {
    return backend_.lock->subscribe(key);
  } catch (const backend_error& e) {
    // Only the early wake-up is lost (e.g. a Redis user without channel rights): the lock still
    // works, so poll for the holder's value instead, in both failure modes. Reported once per wait.
    count(Counter::backend_errors);
    emit(EventType::backend_error, key, e.what());
    can_subscribe = false;
    return nullptr;
  }
}

template <class T>
void Cache<T>::wait_for_signal(std::string_view key, Subscription* sub,
                               std::chrono::steady_clock::time_point until, bool& can_subscribe) {
  if (sub != nullptr) {
    try {
      sub->wait_until(until);
      return;
    } catch (const backend_error& e) {
      count(Counter::backend_errors);
      emit(EventType::backend_error, key, e.what());
      can_subscribe = false;
    }
  }
  std::this_thread::sleep_until(until);
}

template <class T>
T Cache<T>::on_wait_timeout(std::string_view key, detail::LoaderRef<T> loader, detail::Flight<T>& flight,
                            const CallOptions& call) {
  switch (options_.on_wait_timeout) {
    case OnWaitTimeout::compute:
      return compute_fallback(key, loader, flight, call);
    case OnWaitTimeout::serve_stale:
      // Ask the store for anything it still holds, however old (a time before every expiry).
      if (std::optional<Entry<T>> e = read(key, time_point::min())) return std::move(e->value);
      [[fallthrough]];
    case OnWaitTimeout::throw_error:
      break;
  }
  throw timeout_error("stampede: waited " + std::to_string(wait_timeout(call).count()) +
                      " ms for another caller's load of '" + std::string(key) + "'");
}

template <class T>
T Cache<T>::compute_fallback(std::string_view key, detail::LoaderRef<T> loader, detail::Flight<T>& flight,
                             const CallOptions& call) {
  // The callers of one flight that gave up waiting (its waiters, and its leader when another
  // process holds the lock) share one fallback load.
  auto [fallback, leader] = flight.join_fallback();
  if (!leader) {
    // The fallback's load, or the flight's value if that comes first.
    std::optional<T> value;
    if (fallback.wait_until(std::chrono::steady_clock::time_point::max(), call.stop, value) !=
        detail::Flight<T>::Wait::value) {
      throw_cancelled(key);  // a fallback is never abandoned: only a stop ends this wait early
    }
    count(Counter::coalesced);
    return std::move(*value);
  }
  return lead_fallback(key, loader, flight, fallback);
}

template <class T>
T Cache<T>::lead_fallback(std::string_view key, detail::LoaderRef<T> loader, detail::Flight<T>& flight,
                          detail::Flight<T>& fallback) {
  try {
    if (std::optional<T> v = flight.value_if_published()) {  // the flight finished meanwhile
      fallback.set_value(*v);
      count(Counter::coalesced);
      return std::move(*v);
    }
    count(Counter::fallback_computes);
    std::chrono::nanoseconds took{};
    LoadContext context(fallback.load_stop_token());
    T value = run_loader(key, loader, context, took);  // holds no fence, so it is not stored
    fallback.set_value(value);
    return value;
  } catch (...) {
    fallback.set_error(std::current_exception());
    throw;
  }
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
template <class Loader>
void Cache<T>::schedule_refresh(std::string_view key, std::uint64_t observed_fence, Loader&& loader) {
  if (refresher_.probably_pending(key)) return;  // hot stale key: no lock, no allocation
  // The refresh outlives this call: it owns a copy of the loader. A copy that throws costs this
  // refresh, not the caller's hit: it is reported like a refresh that failed.
  std::optional<detail::OwnedLoader<T>> owned;
  try {
    owned.emplace(detail::OwnedLoader<T>::make(std::forward<Loader>(loader)));
  } catch (const std::exception& e) {
    count(Counter::refresh_failures);
    emit(EventType::refresh_failed, key, e.what());
    return;
  } catch (...) {
    count(Counter::refresh_failures);
    emit(EventType::refresh_failed, key, "non-std exception");
    return;
  }
  submit_refresh(key, observed_fence, std::move(*owned));
}

template <class T>
void Cache<T>::submit_refresh(std::string_view key, std::uint64_t observed_fence,
                              detail::OwnedLoader<T> loader) {
  // Shared, so that the task stays copyable (a std::function).
  auto fn = std::make_shared<detail::OwnedLoader<T>>(std::move(loader));
  auto task = [this, k = std::string(key), observed_fence, fn] {
    refresh(k, observed_fence, detail::LoaderRef<T>(*fn));
  };
  if (refresher_.submit(key, std::move(task)) == detail::Refresher::Submit::dropped) {
    count(Counter::refreshes_dropped);
    emit(EventType::refresh_dropped, key, "refresh queue full");
  }
}

template <class T>
void Cache<T>::refresh(const std::string& key, std::uint64_t observed_fence, detail::LoaderRef<T> loader) {
  try {
    std::optional<LockToken> token = backend_.lock->try_acquire(key, options_.lock_ttl);
    if (!token) {  // another process is refreshing or loading this key
      count(Counter::lock_contended);
      return;
    }
    count(Counter::lock_acquired);
    emit(EventType::lock_acquired, key, "refresh");
    LockLease lease(backend_.lock, key, *token, options_.lock_ttl,
                    WatchdogOptions{.enabled = true, .interval = {}, .on_lost = {}});
    // Double check: refresh only the entry we saw; a newer write (or invalidation) means done.
    // Past any local copy that may lag (it would hide another process's write).
    std::optional<Entry<T>> e = read(key, clock_->now(), Read::authoritative);
    if (!e || e->fence != observed_fence) return;
    std::chrono::nanoseconds took{};
    LoadContext context(shutdown_.get_token());  // nobody waits for a refresh: requested by ~Cache
    std::optional<T> loaded;
    try {
      loaded.emplace(run_loader(key, loader, context, took));
    } catch (const std::exception& error) {
      count(Counter::refresh_failures);
      emit(EventType::refresh_failed, key, error.what());
      (void)fail_safe(key, token->fence, error.what());  // re-arms the stale value, if allowed
      return;
    }
    T& value = *loaded;
    const std::optional<std::chrono::milliseconds> life = lifetime(value, context.ttl());
    if (life && life->count() == 0) {
      backend_.store->invalidate(key, token->fence);  // the value is gone: do not serve the old one
    } else if (write(key, value, token->fence, took, life) == PutResult::stored) {
      count(Counter::refreshes);
      emit(EventType::refresh_done, key, {}, took);
    }
    lease.release();
  } catch (const backend_error& e) {
    count(Counter::backend_errors);
    emit(EventType::backend_error, key, e.what());
  } catch (const std::exception& e) {
    count(Counter::refresh_failures);
    emit(EventType::refresh_failed, key, e.what());  // the stale value stays until hard expiry
  } catch (...) {
    count(Counter::refresh_failures);
    emit(EventType::refresh_failed, key, "non-std exception");
  }
}

template <class T>
std::optional<Entry<T>> Cache<T>::read(std::string_view key, time_point now, Read from) {
  try {
    if (from == Read::authoritative) return backend_.store->get_authoritative(key, now);
    return backend_.store->get(key, now);
  } catch (const codec_error& e) {
    count(Counter::decode_errors);
    emit(EventType::decode_failed, key, e.what());
    return std::nullopt;  // garbage at the key is a miss; the next load replaces it
  } catch (const backend_error& e) {
    on_backend_error(key, e);
    return std::nullopt;
  }
}

template <class T>
void Cache<T>::visit_servable(std::string_view key, time_point now,
                              detail::FunctionRef<void(const Entry<T>&)> fn) {
  try {
    backend_.store->visit(key, now, [&](const Entry<T>& e) {
      if (servable(e, now)) fn(e);  // else only a fail-safe "last good" value: a miss
    });
  } catch (const codec_error& e) {
    count(Counter::decode_errors);
    emit(EventType::decode_failed, key, e.what());
  } catch (const backend_error& e) {
    on_backend_error(key, e);
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

template <class T>
std::optional<std::chrono::milliseconds> Cache<T>::lifetime(
    const T& value, std::optional<std::chrono::milliseconds> ttl) const {
  // 0 = do not store. Otherwise the loader's TTL, exact; else the options' (nullopt), jittered.
  if (ttl) return ttl;
  if constexpr (detail::is_optional_v<T>) {
    if (!value.has_value()) {  // negative caching
      if (options_.negative_ttl.count() == 0) return std::chrono::milliseconds{0};
      return options_.negative_ttl;
    }
  }
  return std::nullopt;
}

template <class T>
PutResult Cache<T>::write(std::string_view key, const T& value, std::uint64_t fence,
                          std::chrono::nanoseconds load_time, std::optional<std::chrono::milliseconds> ttl) {
  const time_point now = clock_->now();
  const double jitter =
      options_.ttl_jitter > 0
          ? 1.0 - options_.ttl_jitter * std::uniform_real_distribution<double>(0, 1)(detail::thread_rng())
          : 1.0;
  auto scaled = [jitter](std::chrono::milliseconds d) {
    return std::chrono::duration_cast<std::chrono::system_clock::duration>(d * jitter);
  };
  const std::chrono::system_clock::duration life =
      ttl ? std::chrono::duration_cast<std::chrono::system_clock::duration>(*ttl)
          : scaled(options_.mode == Mode::blocking ? options_.ttl : options_.soft_ttl);
  // Every field, in order: a designated initialiser that skips fields trips GCC 12's
  // -Wmissing-field-initializers in each user TU that instantiates this under -Wextra.
  Entry<T> entry{value, now + life, now + life, fence,
                 std::chrono::duration_cast<std::chrono::milliseconds>(load_time)};
  if (options_.mode == Mode::stale_while_revalidate) entry.hard_expiry += options_.swr_window;
  entry.hard_expiry += options_.fail_safe_max_age;  // kept as "last good" (0 = off)
  const PutResult result = backend_.store->put(key, entry, now);
  if (result == PutResult::stale_fence) {
    count(Counter::stale_writes_rejected);
    emit(EventType::stale_write_rejected, key, "a newer fence exists");
  }
  return result;
}

template <class T>
void Cache<T>::store_loaded(std::string_view key, const T& value, std::uint64_t fence,
                            std::chrono::nanoseconds load_time,
                            std::optional<std::chrono::milliseconds> ttl) {
  // The load succeeded and its waiters may have the value already: every caller gets it, whether
  // or not it could be stored (in both failure modes). The failed store is counted and reported.
  const std::optional<std::chrono::milliseconds> life = lifetime(value, ttl);
  try {
    if (life && life->count() == 0) {
      // An empty result, negative caching off: not stored, and the value it replaces is gone, so
      // no later call (fail-safe, a loader timeout's old value, get()) may serve that one.
      backend_.store->invalidate(key, fence);
      return;
    }
    write(key, value, fence, load_time, life);
  } catch (const backend_error& e) {
    count(Counter::backend_errors);
    emit(EventType::backend_error, key, e.what());
    count(Counter::store_failures);
    emit(EventType::store_failed, key, e.what());
  } catch (const codec_error& e) {
    count(Counter::store_failures);
    emit(EventType::store_failed, key, e.what());
  }
}

template <class T>
bool Cache<T>::xfetch_due(const Entry<T>& e, time_point now) const {
  // XFetch (Vattani, Chierichetti, Lowenstein, VLDB 2015): refresh early with a probability that
  // grows as expiry nears and with the cost of a load; -ln(U) is exponential with mean 1.
  const double delta_ms = static_cast<double>(e.load_time.count());
  const double gap_ms = -delta_ms * options_.early_refresh_beta * std::log(detail::uniform_open0());
  // Compare in double: converting a large gap (big beta or load time) to an integer duration
  // overflowed (UB; in practice a negative gap, so "never refresh").
  return gap_ms >= std::chrono::duration<double, std::milli>(e.soft_expiry - now).count();
}

template <class T>
void Cache<T>::on_backend_error(std::string_view key, const std::exception& e) {
  count(Counter::backend_errors);
  emit(EventType::backend_error, key, e.what());
  if (options_.backend_failure == BackendFailure::fail_closed) throw;
}

template <class T>
void Cache<T>::emit(EventType type, std::string_view key, std::string_view detail,
                    std::chrono::nanoseconds duration) const noexcept {
  if (!options_.on_event) return;
  try {
    options_.on_event(Event{type, key, detail, duration});
  } catch (...) {
    // A hook must not throw; if it does, the library's own path must not change.
  }
}

template <class T>
std::optional<T> Cache<T>::get(std::string_view key) {
  check_key(key);
  const time_point now = clock_->now();
  std::optional<Entry<T>> e = read_servable(key, now);
  if (!e) {
    count(Counter::misses);
    return std::nullopt;
  }
  count(now < e->soft_expiry ? Counter::hits : Counter::stale_hits);
  return std::move(e->value);
}

template <class T>
void Cache<T>::put(std::string_view key, T value) {
  check_key(key);
  // A fresh fence is refused only if the store saw a higher one meanwhile: a concurrent put() or
  // invalidate() drew it later (this put then counts as the earlier of the two: one more fence
  // puts it after), or the store lost its fence record between the draw and the write (Redis: the
  // fence hash flushed or evicted; the refused write made a new one, which the next fence passes).
  for (int attempt = 1;; ++attempt) {
    const std::uint64_t fence = backend_.lock->bump_fence(key);
    if (write(key, value, fence, std::chrono::nanoseconds{0}) == PutResult::stored) break;
    if (attempt == kPutAttempts) {
      throw backend_error("stampede: put of '" + std::string(key) + "' was refused " +
                          std::to_string(kPutAttempts) + " times for its fence; nothing was stored");
    }
  }
  try {
    backend_.lock->notify(key);
  } catch (const backend_error& e) {
    // The value is stored; waiters that cannot be told (e.g. no channel rights) find it by polling.
    count(Counter::backend_errors);
    emit(EventType::backend_error, key, e.what());
  }
  flights_.detach(key);  // after the write: a later caller must not join a load older than it
}

template <class T>
void Cache<T>::invalidate(std::string_view key) {
  check_key(key);
  backend_.store->invalidate(key, backend_.lock->bump_fence(key));
  flights_.detach(key);  // after the invalidation: a later caller must not join a load older than it
}

template <class T>
Stats Cache<T>::stats() const {
  Stats s;
#define STAMPEDE_CACHE_STAT(name, kind, help) \
  s.name = detail::stat_##kind(counters_.sum(static_cast<std::size_t>(Counter::name)));
  STAMPEDE_CACHE_COUNTERS(STAMPEDE_CACHE_STAT)
#undef STAMPEDE_CACHE_STAT
  // The backend's own counters, whatever its type: it adds them itself.
  BackendCounters backend;
  backend_.store->add_counters(backend);
#define STAMPEDE_BACKEND_STAT(name, kind, help) s.name = backend.name;
  STAMPEDE_BACKEND_COUNTERS(STAMPEDE_BACKEND_STAT)
#undef STAMPEDE_BACKEND_STAT
  return s;
}

template <class T>
void Cache<T>::wait_idle() {
  refresher_.wait_idle();
}

}  // namespace stampede
