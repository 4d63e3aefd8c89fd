// stampede/detail/cache_write-inl.hpp: writes: the fenced write of a loaded value and its lifetime, put() and
// invalidate(). Part of the bodies of Cache<T> (cache-inl.hpp includes it); read cache.hpp for the API and
// docs/design.md ("Follow one call") for the path through these files.
#pragma once

#include <chrono>
#include <optional>
#include <random>
#include <string>

#include "stampede/detail/random.hpp"
#include "stampede/detail/type_traits.hpp"
#include "stampede/errors.hpp"

namespace stampede {

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

}  // namespace stampede
