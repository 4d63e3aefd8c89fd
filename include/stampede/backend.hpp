// stampede/backend.hpp: Backend<T>, what a Cache runs on: an entry store and a token lock.
//
// A backend pairs a Store<T> with the TokenLock whose fences that store understands; use a store
// and a lock of one kind (memory_backend(), redis::backend()), or decorate one.
//
//   stampede::Backend<Item> b = stampede::memory_backend<Item>();
//   b.store = std::make_shared<MyLoggingStore<Item>>(b.store);   // a decorator
//   stampede::Cache<Item> cache({.ttl = 30s}, b);
#pragma once

#include <memory>
#include <string>

#include "stampede/clock.hpp"
#include "stampede/store.hpp"
#include "stampede/token_lock.hpp"

namespace stampede {

/// Where a Cache keeps entries and takes locks. Both must be non-null. A plain value.
template <class T>
struct Backend {
  std::shared_ptr<Store<T>> store;
  std::shared_ptr<TokenLock> lock;
  /// Shown in demos and events: "memory", "redis", ...
  std::string name = "custom";
  /// The clock the backend's expiries are measured on, used when CacheOptions::clock is null;
  /// null = system_clock() (epoch time, what a backend shared between hosts needs).
  /// (A default member initializer, so that {store, lock, name} draws no -Wmissing-field-initializers.)
  std::shared_ptr<const Clock> clock = nullptr;
};

}  // namespace stampede
