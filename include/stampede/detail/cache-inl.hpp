// stampede/detail/cache-inl.hpp: the bodies of Cache<T>. Read cache.hpp for the API.
//
// By path (docs/design.md, "Follow one call"): this file has construction, destruction, the
// argument checks, counters and events; a call's lookup is in cache_lookup-inl.hpp, a flight's
// leader in cache_lead-inl.hpp, its waiters and the wait-timeout policies in cache_wait-inl.hpp,
// the fenced writes, put() and invalidate() in cache_write-inl.hpp, and the background refreshes
// in cache_background-inl.hpp.
#pragma once

#include <chrono>
#include <stdexcept>
#include <string>
#include <utility>

#include "stampede/errors.hpp"

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

}  // namespace stampede

#include "stampede/detail/cache_background-inl.hpp"
#include "stampede/detail/cache_lead-inl.hpp"
#include "stampede/detail/cache_lookup-inl.hpp"
#include "stampede/detail/cache_wait-inl.hpp"
#include "stampede/detail/cache_write-inl.hpp"
