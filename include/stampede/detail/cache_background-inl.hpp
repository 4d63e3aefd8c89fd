// stampede/detail/cache_background-inl.hpp: background refreshes (SWR and early refresh): scheduling, the
// refresh itself, wait_idle(). Part of the bodies of Cache<T> (cache-inl.hpp includes it); read cache.hpp for
// the API and docs/design.md ("Follow one call") for the path through these files.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "stampede/errors.hpp"
#include "stampede/lease.hpp"

namespace stampede {

template <class T>
template <class Loader>
void Cache<T>::schedule_refresh(std::string_view key, std::uint64_t observed_fence, Loader&& loader) {
  if (refresher_.probably_pending(key)) return;  // hot stale key: no lock, no allocation
  schedule_refresh_of(key, observed_fence,
                      [&] { return detail::OwnedLoader<T>::make(std::forward<Loader>(loader)); });
}

template <class T>
void Cache<T>::schedule_refresh_of(std::string_view key, std::uint64_t observed_fence,
                                   detail::FunctionRef<detail::OwnedLoader<T>()> copy) {
  // The refresh outlives this call: it owns a copy of the loader. A copy that throws costs this
  // refresh, not the caller's hit: it is reported like a refresh that failed.
  std::optional<detail::OwnedLoader<T>> owned;
  try {
    owned.emplace(copy());
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
void Cache<T>::wait_idle() {
  refresher_.wait_idle();
}

}  // namespace stampede
