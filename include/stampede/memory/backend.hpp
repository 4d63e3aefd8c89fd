// stampede/memory/backend.hpp: memory_backend<T>(), the embedded in-process backend as a Backend<T>.
//
// MemoryStore<T> + MemoryTokenLock on one monotonic clock. A Cache built without a backend uses it.
//
//   stampede::Cache<Item> cache({.ttl = 30s}, stampede::memory_backend<Item>(/*max_entries=*/10'000));
//   auto lock = stampede::memory_backend<Item>().lock;   // a TokenLock of its own
#pragma once

#include <cstddef>
#include <memory>

#include "stampede/backend.hpp"
#include "stampede/clock.hpp"
#include "stampede/memory/store.hpp"
#include "stampede/memory/token_lock.hpp"

namespace stampede {

/// The embedded in-process backend: MemoryStore<T> + MemoryTokenLock, both on `clock`
/// (default: monotonic_clock(), so a step of the wall clock changes no lifetime).
/// @param max_entries the store's capacity; 0 = unbounded.
/// @param clock the clock of expiries; null = monotonic_clock().
/// @return the backend, named "memory".
template <class T>
Backend<T> memory_backend(std::size_t max_entries = 0,
                          std::shared_ptr<const Clock> clock = monotonic_clock()) {
  if (!clock) clock = monotonic_clock();
  return {std::make_shared<MemoryStore<T>>(max_entries), std::make_shared<MemoryTokenLock>(clock), "memory",
          clock};
}

}  // namespace stampede
