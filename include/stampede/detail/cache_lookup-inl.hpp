// stampede/detail/cache_lookup-inl.hpp: the lookup path of Cache<T>: get_or_compute() and visit() up to the
// miss, the hit (fresh, stale, due for an early refresh), get(), and the reads behind them. Part of the
// bodies of Cache<T> (cache-inl.hpp includes it); read cache.hpp for the API and docs/design.md ("Follow one
// call") for the path through these files.
#pragma once

#include <chrono>
#include <cmath>
#include <exception>
#include <functional>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

#include "stampede/detail/random.hpp"
#include "stampede/errors.hpp"

namespace stampede {

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

}  // namespace stampede
