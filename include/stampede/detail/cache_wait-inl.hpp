// stampede/detail/cache_wait-inl.hpp: waiting for another caller's load: a flight's waiters, the loader
// timeouts they apply, the wake-up signal and its poll fallback, the wait-timeout policies and the shared
// fallback load. Part of the bodies of Cache<T> (cache-inl.hpp includes it); read cache.hpp for the API and
// docs/design.md ("Follow one call") for the path through these files.
#pragma once

#include <chrono>
#include <exception>
#include <optional>
#include <string>
#include <thread>
#include <utility>

#include "stampede/detail/deadline.hpp"
#include "stampede/errors.hpp"

namespace stampede {

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

}  // namespace stampede
